"""What the models learn: a grid of (model, level, hidden, lr, seed) runs of temporal order.

Each run trains until the held-out error is <= 1/2560 (2,560 fixed held-out sequences) or
``--max-sequences`` have been seen. Per configuration it reports, over the seeds, the median
and worst sequences-to-solve (a run that never solves counts as unsolved), the final held-out
accuracies, the divergences (runs with any non-finite gradient skipped, or stopped for them)
and the wall time. Appends raw runs to ``--jsonl`` and writes the table to ``--out``.

    cd benchmarks && ../.venv/bin/python learning.py --preset results --out results-table.md
    cd benchmarks && ../.venv/bin/python learning.py --models gated --levels hard --lrs 1e-2
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from attnrnn.training import TrainConfig, fit

LSTM_1997 = 31_390  # Hochreiter & Schmidhuber (1997), exp. 6a, hard level, mean sequences

# docs/results.md: (model, level, lr, budget in sequences), each over seeds 0-4.
RESULTS = [
    ("gated", "hard", 1e-2, 100_000),
    ("gated,offset=0", "hard", 1e-2, 100_000),
    ("gated", "hard", 3e-3, 100_000),
    ("gated", "moderate", 1e-2, 100_000),
    ("lstm", "hard", 1e-2, 100_000),
    ("attention:inf", "moderate", 3e-3, 50_000),
    ("attention:inf,norm,scale=0.18", "moderate", 3e-3, 50_000),
    ("attention:2", "moderate", 3e-3, 50_000),
    ("attention:2,cap=5", "moderate", 3e-3, 50_000),
]


def run_one(model, level, hidden, lr, seed, max_sequences, batch=32, optimizer="adam",
            clip=1.0):
    config = TrainConfig(task="temporal-order", level=level, model=model, hidden=hidden,
                         steps=-(-max_sequences // batch), batch=batch, optimizer=optimizer,
                         lr=lr, clip=clip, seed=seed)
    start = time.perf_counter()
    _, _, summary = fit(config, progress=False, stop_when_solved=True)
    return {
        "model": model, "level": level, "hidden": hidden, "lr": lr, "seed": seed,
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
    parser.add_argument("--lrs", nargs="+", type=float, default=[1e-2])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--max-sequences", type=int, default=100_000)
    parser.add_argument("--jsonl", default=None, help="append every run here")
    parser.add_argument("--out", default=None, help="write the markdown table here")
    parser.add_argument("--preset", choices=["results"], default=None,
                        help="run the grid of docs/results.md instead of the cross product")
    args = parser.parse_args()
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
