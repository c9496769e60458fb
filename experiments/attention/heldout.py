"""What the models learn: a grid of (model, level, hidden, lr, seed) runs of temporal order.

Each run trains until the held-out error is <= 1/2560 (2,560 fixed held-out sequences) or
``--max-sequences`` have been seen. Per configuration it reports, over the seeds, the median
and worst sequences-to-solve (a run that never solves counts as unsolved), the final held-out
accuracies, the divergences (runs with any non-finite gradient skipped, or stopped for them)
and the wall time. Appends raw runs to ``--jsonl`` and writes the table to ``--out``.

    .venv/bin/python experiments/attention/heldout.py --preset results --out results-table.md
    .venv/bin/python experiments/attention/heldout.py --models gated --levels hard --lrs 1e-2
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import jax
import optax

from attnrnn import train as training
from attnrnn.attention import bounded_params
from attnrnn.train import TrainConfig, fit, parse_model

# docs/results.md: (model, level, lr (None: the model's default), budget in sequences), each
# over seeds 0-4 (the gated RNN and the LSTMs are measured under the 1997 protocol instead,
# by experiments/paper1997). A model ending in "+projection" is the raw model trained with its
# weights projected onto the bounded set after every update (instead of reparametrised
# inside).
RESULTS = [
    ("attention:inf", "moderate", None, 50_000),
    ("attention:inf", "hard", None, 50_000),
    ("attention:2", "moderate", None, 50_000),
    ("attention:2", "hard", None, 50_000),
    ("attention:inf,raw", "moderate", None, 50_000),
    ("attention:2,raw", "moderate", None, 50_000),
    ("attention:inf+projection", "moderate", None, 50_000),
    ("attention:2+projection", "moderate", None, 50_000),
]


def project_after_update(project):
    """An optax transformation whose updates land the parameters on ``project(params +
    updates)`` (the pattern of ``optax.keep_params_nonnegative``)."""
    def update(updates, state, params):
        target = project(optax.apply_updates(params, updates))
        return jax.tree.map(lambda new, old: new - old, target, params), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def fit_projected(config, options):
    """``fit`` for the raw model with its cell's weights projected by ``bounded_params`` at
    the start and after every update (held-out evaluation every ``eval_every`` steps, stop
    when solved); returns fit's summary."""
    project = lambda p: p._replace(cell=bounded_params(p.cell, options))  # noqa: E731
    model = config.build_model()
    projected = training.FunctionModel(lambda key: project(model.init(key)), model.apply,
                                       model.predict, model.loss, model.name)
    optimizer = optax.chain(config.make_optimizer(), project_after_update(project))
    return fit(config, model=projected, optimizer=optimizer, progress=False,
               stop_when_solved=True)[2]


def run_one(model, level, hidden, lr, seed, max_sequences, batch=32, optimizer="adam",
            clip=1.0):
    spec, _, scheme = model.partition("+")
    config = TrainConfig(task="temporal-order", level=level,
                         model=spec + (",raw" if scheme else ""), hidden=hidden,
                         steps=-(-max_sequences // batch), batch=batch, optimizer=optimizer,
                         lr=lr, clip=clip, seed=seed).resolve()
    start = time.perf_counter()
    if scheme == "projection":
        summary = fit_projected(config, parse_model(spec).options)
    else:
        _, _, summary = fit(config, progress=False, stop_when_solved=True)
    return {
        "model": model, "level": level, "hidden": hidden, "lr": config.lr, "seed": seed,
        "sequences_to_solve": summary["sequences_to_solve"],
        "heldout_accuracy": summary["heldout_accuracy"],
        "diverged": summary["skipped_updates"] > 0 or summary["stop_reason"].startswith("stopped"),
        "skipped_updates": summary["skipped_updates"],
        "sequences_seen": summary["sequences_seen"],
        "max_sequences": max_sequences,
        "wall_seconds": time.perf_counter() - start,
    }


def summarise(runs):
    groups = {}
    for r in runs:
        key = (r["model"], r["level"], r["hidden"], r["lr"], r["max_sequences"])
        groups.setdefault(key, []).append(r)
    rows = []
    for (model, level, hidden, lr, max_sequences), rs in groups.items():
        solved = [r["sequences_to_solve"] for r in rs if r["sequences_to_solve"] is not None]
        # Unsolved runs sort last: as if they solved just after the budget.
        ranked = sorted(r["sequences_to_solve"] or max_sequences + 1 for r in rs)
        median = statistics.median(ranked)
        worst = ranked[-1]
        fmt = lambda v: f"> {max_sequences:,}" if v > max_sequences else f"{v:,.0f}"
        rows.append((model, level, hidden, lr, len(rs), f"{len(solved)}/{len(rs)}", fmt(median),
                     fmt(worst), " ".join(f"{r['heldout_accuracy']:.4f}" for r in rs),
                     sum(r["diverged"] for r in rs),
                     f"{sum(r['wall_seconds'] for r in rs):.0f}"))
    header = ("model", "level", "hidden", "lr", "seeds", "solved", "median seqs to solve",
              "worst", "final held-out accuracy per seed", "diverged", "wall s")
    # (the budget shows in "> N" for runs that did not solve)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["gated"])
    parser.add_argument("--levels", nargs="+", default=["moderate"])
    parser.add_argument("--hidden", nargs="+", type=int, default=[32])
    parser.add_argument("--lrs", nargs="+", type=float, default=[None],
                        help="learning rates (default: each model's own)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--max-sequences", type=int, default=100_000)
    parser.add_argument("--jsonl", default=None, help="append every run here")
    parser.add_argument("--out", default=None, help="write the markdown table here")
    parser.add_argument("--preset", choices=["results"], default=None,
                        help="run the grid of docs/results.md instead of the cross product")
    parser.add_argument("--tabulate", default=None, metavar="JSONL",
                        help="only tabulate the runs of this file (rows rerun apart replaced "
                             "in it)")
    args = parser.parse_args()
    if args.tabulate:
        table = summarise([json.loads(line) for line in Path(args.tabulate).open()])
        print(table)
        if args.out:
            Path(args.out).write_text(table + "\n")
        return
    if args.preset == "results":
        grid = [(model, level, 32, lr, seed, budget) for model, level, lr, budget in RESULTS
                for seed in args.seeds]
    else:
        grid = [(model, level, hidden, lr, seed, args.max_sequences) for model in args.models
                for level in args.levels for hidden in args.hidden for lr in args.lrs
                for seed in args.seeds]
    runs = []
    for model, level, hidden, lr, seed, budget in grid:
        run = run_one(model, level, hidden, lr, seed, budget)
        runs.append(run)
        print(json.dumps(run), flush=True)
        if args.jsonl:
            with open(args.jsonl, "a") as f:
                f.write(json.dumps(run) + "\n")
    table = summarise(runs)
    print(table)
    if args.out:
        Path(args.out).write_text(table + "\n")


if __name__ == "__main__":
    main()
