"""MNIST-1D against its published table (Greydanus 2020), under the benchmark's own protocol:
Adam at 1e-2, batches of 100 taken in order, 6,000 steps, accuracy on the 1,000 test
sequences (`attnrnn train --task mnist1d` runs exactly that).

Each model twice, plain and with the time axis shuffled: at the paper's size (its GRUBase's
shape, bidirectional with hidden 6 and a readout over every state, at most the 5,210 weights
of its ConvBase) and as its training default on MNIST-1D (the best configuration found at
that size); Flax's `nnx.GRUCell` in `nnx.Bidirectional(nnx.RNN(...))` is the peer row: its
own cell and time loop, our training loop (`fit(..., model=...)`). Five seeds each.

    python experiments/mnist1d/run.py                 # every row, 5 seeds, plain and shuffled
    python experiments/mnist1d/run.py --seeds 1 --rows conv gated   # a quick look
    python experiments/mnist1d/run.py --probes --seeds 3 --tasks mnist1d   # AttentionRNN(∞)
    python experiments/mnist1d/run.py --update --rows attention:inf   # rerun one row

Writes the raw rows (`--jsonl`, one line per run) and the table (`--out`).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

# The paper's README table (MNIST-1D test accuracy, %), plain / shuffled time axis.
PAPER = {"logistic regression": (32, 32), "MLP": (68, 68), "CNN": (94, 56), "GRU": (91, 57)}
PAPER_ROW = {"conv": "CNN", "gru": "GRU", "flax-gru": "GRU"}
PAPER_SIZE = {"hidden": 6, "layers": 1, "bidirectional": True, "readout": "all",
              "position": False}

# (row name, model, overrides of the model's MNIST-1D defaults)
ROWS = {
    "conv": ("conv", {}),
    "gated": ("gated", {}),
    "gated (paper's size)": ("gated", PAPER_SIZE),
    "gru": ("gru", {}),
    "gru (paper's size)": ("gru", PAPER_SIZE),
    "flax-gru": ("flax-gru", PAPER_SIZE),
    "lstm": ("lstm", {}),
    "lstm (paper's size)": ("lstm", PAPER_SIZE),
    "attention:2": ("attention:2", {}),
    "attention:2 (paper's size)": ("attention:2", {**PAPER_SIZE, "hidden": 5}),
    "attention:inf": ("attention:inf", {}),
    # the paper's shape with MNIST-1D's recipe, six heads (hidden 6: one unit a head)
    "attention:inf (paper's size)": (
        "attention:inf,raw,nonexp,v=2,cap=5,heads=6,recency=0/0.01/0.03/0.1/0.3/1", PAPER_SIZE),
}
# What limits AttentionRNN(∞) here (--probes): its window, its bounds, what its scores can see.
_TWO_OF_12 = {"hidden": 12, "layers": 2, "bidirectional": True, "readout": "last",
              "position": False}
PROBES = {
    "attention:1 (paper's size)": ("attention:1", PAPER_SIZE),
    "attention:8 (paper's size)": ("attention:8", PAPER_SIZE),
    "attention:inf, 2 layers of 12": ("attention:inf", _TWO_OF_12),
    "attention:inf,raw, 2 layers of 12": ("attention:inf,raw", _TWO_OF_12),
    "attention:inf,norm, 2 layers of 12": ("attention:inf,norm", _TWO_OF_12),
    "attention:inf, 2 layers of 12, position": ("attention:inf", {**_TWO_OF_12,
                                                                 "position": True}),
    "attention:inf,norm, 2 layers of 12, position": ("attention:inf,norm",
                                                     {**_TWO_OF_12, "position": True}),
    # Why the GRU row and the Flax row differ: our GRU started from the very weights Flax's
    # network starts from (the implementation alone; the rows' initialisations differ).
    "gru (paper's size), Flax's initial weights": ("gru-flax-init", PAPER_SIZE),
}
TASKS = ("mnist1d", "mnist1d,shuffle")


def flax_gru_model(task, hidden):
    """Flax's own bidirectional GRU (``nnx.GRUCell`` in ``nnx.RNN``, both directions
    concatenated) with a linear readout over every state, as a ``FunctionModel`` of our loop."""
    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx

    from attnrnn.train import FunctionModel

    class FlaxGRU(nnx.Module):
        def __init__(self, rngs):
            cell = lambda: nnx.GRUCell(task.features, hidden, rngs=rngs)  # noqa: E731
            self.rnn = nnx.Bidirectional(nnx.RNN(cell(), rngs=False), nnx.RNN(cell(), rngs=False),
                                         rngs=False)
            self.readout = nnx.Linear(2 * hidden * task.train[0].shape[1], task.classes,
                                      rngs=rngs)

        def __call__(self, xs):  # a batch (B, T, n), as Flax's RNN takes it
            zero = jnp.zeros((xs.shape[0], hidden), xs.dtype)  # GRUCell's initial carry
            states = self.rnn(xs, initial_carry=(zero, zero))
            return self.readout(states.reshape(xs.shape[0], -1))

    graph, _, rest = nnx.split(FlaxGRU(nnx.Rngs(0)), nnx.Param, ...)  # rest: its RNG counts

    def init(key):
        return nnx.split(FlaxGRU(nnx.Rngs(params=key)), nnx.Param, ...)[1]

    def apply(params, xs, mask=None):
        return nnx.merge(graph, params, rest)(xs[None])[0]

    def predict(outputs):
        return jax.nn.softmax(outputs, axis=-1)

    def loss(params, xs, labels, mask=None, tolerance=None):
        logits = nnx.merge(graph, params, rest)(xs)  # the whole batch at once, as Flax runs
        wrong = (jnp.argmax(logits, axis=-1) != labels).astype(logits.dtype)
        errors = jnp.sum(wrong)
        return (jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels)),
                {"accuracy": 1 - jnp.mean(wrong), "errors": errors,
                 "count": jnp.asarray(labels.shape[0], logits.dtype)})

    return FunctionModel(init, apply, predict, loss, f"flax-gru,bi,readout=all (hidden {hidden})")


def gru_from_flax_weights(task, hidden):
    """``attnrnn.gru`` at the paper's size, bidirectional, read out over every state, started
    from the weights Flax's network (``flax_gru_model``) draws for the same key: its GRUCells'
    kernels and input biases (Flax's cell has no hidden-side biases: ours are held at 0) and its
    readout: Flax's network exactly, computed by ours (``model.apply``, ``model.loss``)."""
    import jax.numpy as jnp

    from attnrnn.gru import GRUParams
    from attnrnn.train import FunctionModel, model_for
    from attnrnn.train.models import Readout, SequenceModelParams

    peer = flax_gru_model(task, hidden)
    ours = model_for("gru", task, hidden, bidirectional=True, readout="all")

    def cell(flax_cell):
        i, h = flax_cell["dense_i"], flax_cell["dense_h"]
        return GRUParams(i["kernel"][...].T, h["kernel"][...].T, i["bias"][...],
                         jnp.zeros(3 * hidden, i["bias"][...].dtype))

    def init(key):
        flax = peer.init(key)
        rnn = flax["rnn"]
        return SequenceModelParams(
            ((cell(rnn["forward_rnn"]["cell"]), cell(rnn["backward_rnn"]["cell"])),),
            Readout(flax["readout"]["kernel"][...].T, flax["readout"]["bias"][...]))

    def without_hidden_biases(params):  # Flax's cell has none: ours stay at 0 (no gradient)
        return params._replace(cell=tuple(tuple(p._replace(b_h=jnp.zeros_like(p.b_h))
                                                for p in layer) for layer in params.cell))

    def apply(params, xs, mask=None):
        return ours.apply(without_hidden_biases(params), xs, mask)

    def loss(params, xs, labels, mask=None, tolerance=None):
        return ours.loss(without_hidden_biases(params), xs, labels, mask, tolerance)

    return FunctionModel(init, apply, ours.predict, loss, f"{ours.name} (Flax's initial weights)")


def run_one(job):
    """One run: ``(row, task, seed)`` -> its record."""
    row, task_name, seed = job
    from attnrnn import train

    model_name, overrides = {**ROWS, **PROBES}[row]
    peer = model_name in ("flax-gru", "gru-flax-init")
    config = train.TrainConfig(task=task_name, model="gru" if peer else model_name, seed=seed,
                               **overrides).resolve()
    task = config.make_task()
    model = None  # the config's: the model's MNIST-1D default
    if model_name == "flax-gru":
        model = flax_gru_model(task, config.hidden)
    elif model_name == "gru-flax-init":
        model = gru_from_flax_weights(task, config.hidden)
    elif overrides:  # exactly the model named, without the default's options (norm)
        model = train.model_for(model_name, task, config.hidden, layers=config.layers,
                                bidirectional=config.bidirectional, readout=config.readout,
                                position=config.position)
    start = time.perf_counter()
    _, _, summary = train.fit(config, model=model, progress=False)
    return {"row": row, "task": task_name, "seed": seed, "model": summary["model"],
            "hidden": config.hidden, "layers": config.layers,
            "bidirectional": config.bidirectional, "readout": config.readout,
            "position": config.position,
            "num_params": summary["num_params"], "test_accuracy": summary["test_accuracy"],
            "test_loss": summary["test_loss"], "steps": summary["steps"],
            "wall_seconds": round(time.perf_counter() - start, 1)}


def table(records, rows=ROWS):
    """The markdown table: one line per row, plain and shuffled side by side."""
    lines = ["| model | configuration | weights | MNIST-1D (%) | shuffled (%) | paper: plain / "
             "shuffled (%) | s per run |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        cells = []
        for task in TASKS:
            runs = [r for r in records if r["row"] == row and r["task"] == task]
            if not runs:
                cells.append("not run")
                continue
            accs = [100 * r["test_accuracy"] for r in runs]
            cells.append(f"{statistics.mean(accs):.1f} ({min(accs):.1f}–{max(accs):.1f}, "
                         f"{len(runs)} seeds)")
        runs = [r for r in records if r["row"] == row]
        if not runs:
            continue
        paper = PAPER.get(PAPER_ROW.get(rows[row][0]))
        lines.append(f"| {row} | `{runs[0]['model']}`, hidden {runs[0]['hidden']} | "
                     f"{runs[0]['num_params']:,} | {cells[0]} | {cells[1]} | "
                     f"{f'{paper[0]} / {paper[1]}' if paper and 'size' not in row else ''} | "
                     f"{statistics.mean(r['wall_seconds'] for r in runs):.0f} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="+", default=None, choices=[*ROWS, *PROBES])
    parser.add_argument("--probes", action="store_true",
                        help="the AttentionRNN(∞) probes instead of the table's rows (written "
                        "to probes.jsonl and probes.md here)")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--jsonl", default=None, help="default: results.jsonl (probes.jsonl)")
    parser.add_argument("--out", default=None,
                        help="default: docs/results-mnist1d.md (probes.md here)")
    parser.add_argument("--update", action="store_true",
                        help="keep the other rows of --jsonl: run only --rows on --tasks, "
                        "replace their records, and write the table of all of them")
    args = parser.parse_args(argv)
    rows = PROBES if args.probes else ROWS
    args.rows = args.rows or list(rows)
    args.jsonl = args.jsonl or str(HERE / ("probes.jsonl" if args.probes else "results.jsonl"))
    args.out = args.out or str(HERE / "probes.md" if args.probes
                               else ROOT / "docs" / "results-mnist1d.md")
    jobs = [(row, task, seed) for task in args.tasks for row in args.rows
            for seed in range(args.seeds)]
    records = []
    if args.update and Path(args.jsonl).exists():
        records = [r for r in map(json.loads, Path(args.jsonl).read_text().splitlines())
                   if (r["row"], r["task"]) not in {(row, t) for row in args.rows
                                                    for t in args.tasks}]
    with multiprocessing.get_context("spawn").Pool(args.processes) as pool:
        for record in pool.imap_unordered(run_one, jobs):
            records.append(record)
            print(json.dumps(record), flush=True)
    Path(args.jsonl).write_text("".join(json.dumps(r) + "\n" for r in records))
    Path(args.out).write_text(table(records, rows))
    print(table(records, rows))


if __name__ == "__main__":
    main()
