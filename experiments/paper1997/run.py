"""The 1997 paper's tables, side by side, all under ``--protocol 1997`` (``attnrnn.train.protocol``).

Each row runs its trials side by side on device (``attnrnn.train.fit_trials``): trial ``i`` is
seed ``i``. Reports, per row, trials stopped (ST3), mean / min / max sequences-to-stop over
the trials that stopped, mean test errors of 2,560 fresh sequences, and wall time. The
paper's own mean (Hochreiter & Schmidhuber 1997, §5.4 and §5.6) is printed beside.

    .venv/bin/python experiments/paper1997/run.py --rows 6a --jsonl runs.jsonl --out table.md
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from attnrnn.train import TrainConfig, fit_trials

# The 1997 network on the adding problem: as the library builds it (a linear output unit),
# with the paper's truncated gradient, and with the logistic output unit of the paper's text.
LSTM1997 = ("lstm1997", "lstm1997,truncated", "lstm1997,logistic")
# The peer of the modern LSTM: Flax's own cell, on our tasks, protocol and training settings.
FLAX_LSTM = "flax-lstm"
# (row name, task settings, model, trials, budget in sequences)
ROWS = {
    "6a": [
        ({"task": "temporal-order", "level": "hard"}, "lstm1997", 20, 200_000),
        ({"task": "temporal-order", "level": "hard"}, "gated", 20, 200_000),
        ({"task": "temporal-order", "level": "hard"}, "attention:inf", 20, 200_000),
        ({"task": "temporal-order", "level": "hard"}, "lstm", 20, 200_000),
    ],
    **{f"adding{length}": [({"task": "adding", "length": length}, model, 10, 1_000_000)
                           for model in (*LSTM1997, "gated", "attention:inf", "lstm")
                           + (FLAX_LSTM,) * (length == 100)]
       for length in (100, 500, 1000)},
}
ROWS["6a"].append(({"task": "temporal-order", "level": "hard"}, FLAX_LSTM, 20, 200_000))
# The paper's mean sequences to stop under its own protocol (20 trials for 6a, 10 for adding).
PAPER = {("temporal-order", "hard"): "31,390", ("adding", 100): "74,000",
         ("adding", 500): "209,000", ("adding", 1000): "853,000"}


def flax_lstm_model(task, hidden):
    """Flax's ``nnx.OptimizedLSTMCell`` with a linear readout of the last valid state, as a
    ``FunctionModel`` of our loop: the cell stepped by a masked ``lax.scan`` (a skipped step carries
    the state, as every recurrence here), the loss and the 1997 rule's error measures ours."""
    import jax
    import jax.numpy as jnp
    from flax import nnx
    from jax import lax

    from attnrnn.train import FunctionModel, batch_loss

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.cell = nnx.OptimizedLSTMCell(task.features, hidden, rngs=rngs)
            self.readout = nnx.Linear(hidden, task.classes, rngs=rngs)

    graph, _, rest = nnx.split(Net(nnx.Rngs(0)), nnx.Param, ...)

    def init(key):
        return nnx.split(Net(nnx.Rngs(params=key)), nnx.Param, ...)[1]

    def apply(params, xs, mask=None):
        net = nnx.merge(graph, params, rest)
        mask = jnp.ones(xs.shape[0], bool) if mask is None else mask

        def step(carry, inputs):
            x, keep = inputs
            new, _ = net.cell(carry, x)
            return jax.tree.map(lambda a, b: jnp.where(keep, a, b), new, carry), None

        zero = jnp.zeros(hidden, xs.dtype)
        (_, h), _ = lax.scan(step, (zero, zero), (xs, mask))
        return net.readout(h)

    def predict(outputs):
        return outputs if task.regression else jax.nn.softmax(outputs, axis=-1)

    def loss(params, xs, labels, mask=None, tolerance=None):
        mask = jnp.ones(xs.shape[:2], bool) if mask is None else mask
        return batch_loss(apply, predict, params, xs, labels, mask, tolerance,
                          per_step=task.per_step, regression=task.regression)

    return FunctionModel(init, apply, predict, loss, FLAX_LSTM)


def run_row(settings, model, seeds, budget, max_seconds=None):
    peer = model == FLAX_LSTM
    config = TrainConfig(model="lstm" if peer else model, protocol="1997", seed=0,
                         **settings).resolve()
    config = config.replace(steps=-(-budget // config.batch))
    runs = fit_trials(config, seeds, max_seconds=max_seconds,
                      model=flax_lstm_model(config.make_task(), config.hidden) if peer else None)
    return with_stats({
        "task": settings["task"], "level": settings.get("level"),
        "length": settings.get("length"), "model": model, "budget": budget,
        "batch": config.batch, "optimizer": config.optimizer, "lr": config.lr,
        "clip": config.clip, "num_params": runs[0]["num_params"],
        "wall_seconds": runs[0]["wall_seconds"],
        "per_trial": [(r["sequences_to_stop"], r["test_errors"], r["skipped_updates"],
                       r["sequences_run"]) for r in runs],
    })


def with_stats(row):
    """The row's summary figures, from its ``per_trial`` list (stop, test errors, skipped
    updates, sequences run)."""
    trials = row["per_trial"]
    stopped = [t[0] for t in trials if t[0] is not None]
    return {**row, "trials": len(trials), "stopped": len(stopped),
            "mean": statistics.mean(stopped) if stopped else None,
            "min": min(stopped, default=None), "max": max(stopped, default=None),
            "mean_test_errors": statistics.mean(t[1] for t in trials),
            "skipped_updates": sum(t[2] for t in trials),
            # How far the unstopped trials ran (the budget unless a wall-clock cap ended them).
            "least_run": min((t[3] for t in trials if t[0] is None), default=row["budget"])}


def merge(rows):
    """Rows of the same experiment run in parts (seed ranges in separate processes) as one
    row: trials concatenated, wall time the longest part's."""
    merged = {}
    for row in rows:
        key = (row["task"], row["level"], row["length"], row["model"])
        if key in merged:
            first = merged[key]
            row = {**first, "per_trial": first["per_trial"] + row["per_trial"],
                   "wall_seconds": max(first["wall_seconds"], row["wall_seconds"])}
        merged[key] = with_stats(row) if len(row["per_trial"][0]) == 4 else row
    return list(merged.values())


def table(results):
    def fmt(v):
        return "-" if v is None else f"{v:,.0f}"

    header = ("task", "model (weights)", "training", "trials stopped", "mean seqs to stop",
              "min", "max", "mean test errors / 2,560", "wall s", "paper: LSTM 1997, mean")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    order = {model: i for i, model in enumerate((*LSTM1997, "gated", "attention:inf", "lstm",
                                                 FLAX_LSTM))}
    for r in sorted(results, key=lambda r: (r["task"] == "adding", r["length"] or 0,
                                            order.get(r["model"], len(order)), r["model"])):
        task = (f"6a {r['level']}" if r["task"] == "temporal-order" else
                f"adding T = {r['length']}")
        paper = PAPER.get((r["task"], r["level"] or r["length"]), "")
        budget = f"budget {r['budget']:,}"
        if r.get("least_run", r["budget"]) < r["budget"]:
            budget += f" (wall-capped: unstopped trials ran ≥ {r['least_run']:,})"
        training = (f"{r['optimizer']} {r['lr']:g}, batch {r['batch']}, "
                    f"clip {r['clip'] if r['clip'] else 'none'}, {budget}")
        lines.append("| " + " | ".join([
            task, f"{r['model']} ({r['num_params']:,})", training,
            f"{r['stopped']}/{r['trials']}", fmt(r["mean"]), fmt(r["min"]), fmt(r["max"]),
            f"{r['mean_test_errors']:.1f}", f"{r['wall_seconds']:.0f}", paper]) + " |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--models", nargs="+", default=None,
                        help="run only these models' rows (default: every row's model)")
    parser.add_argument("--jsonl", default=None, help="append every row here")
    parser.add_argument("--out", default=None, help="write the markdown table here")
    parser.add_argument("--seeds", default=None, metavar="A:B",
                        help="run only trials A..B-1 of each row (split a row over processes)")
    parser.add_argument("--max-seconds", type=float, default=None,
                        help="wall-clock cap per row; unfinished trials count as not stopped")
    parser.add_argument("--merge", nargs="+", default=None, metavar="JSONL",
                        help="only tabulate: merge the rows of these files (split runs joined)")
    args = parser.parse_args()
    if args.merge:
        rows = [json.loads(line) for path in args.merge for line in open(path) if line.strip()]
        results = merge(rows)
        print(table(results))
        if args.out:
            Path(args.out).write_text(table(results) + "\n")
        return
    results = []
    for name in args.rows:
        for settings, model, trials, budget in ROWS[name]:
            if args.models and model not in args.models:
                continue
            seeds = range(trials)
            if args.seeds:
                low, high = map(int, args.seeds.split(":"))
                seeds = range(low, min(high, trials))
            result = run_row(settings, model, seeds, budget, args.max_seconds)
            results.append(result)
            print(json.dumps(result), flush=True)
            if args.jsonl:
                with open(args.jsonl, "a") as f:
                    f.write(json.dumps(result) + "\n")
    print(table(results))
    if args.out:
        Path(args.out).write_text(table(results) + "\n")


if __name__ == "__main__":
    main()
