"""The 1997 paper's tables, side by side, all under ``--protocol 1997`` (``attnrnn.protocol``).

Each row runs its trials side by side on device (``training.fit_trials``): trial ``i`` is
seed ``i``. Reports, per row, trials stopped (ST3), mean / min / max sequences-to-stop over
the trials that stopped, mean test errors of 2,560 fresh sequences, and wall time. The
paper's own mean (Hochreiter & Schmidhuber 1997, §5.4 and §5.6) is printed beside.

    .venv/bin/python benchmarks/paper1997.py --rows 6a --jsonl runs.jsonl --out table.md
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from attnrnn.training import TrainConfig, fit_trials

# (row name, task settings, model, trials, budget in sequences)
ROWS = {
    "6a": [
        ({"task": "temporal-order", "level": "hard"}, "lstm1997", 20, 200_000),
        ({"task": "temporal-order", "level": "hard"}, "gated", 20, 200_000),
        ({"task": "temporal-order", "level": "hard"}, "attention:inf", 20, 200_000),
        ({"task": "temporal-order", "level": "hard"}, "lstm", 3, 200_000),
    ],
    "adding100": [
        ({"task": "adding", "length": 100}, "lstm1997", 10, 1_000_000),
        ({"task": "adding", "length": 100}, "gated", 10, 300_000),
        ({"task": "adding", "length": 100}, "attention:inf", 10, 300_000),
    ],
}
# The paper's mean sequences to stop under its own protocol (20 trials for 6a, 10 for adding).
PAPER = {("temporal-order", "hard"): "31,390", ("adding", 100): "74,000",
         ("adding", 1000): "853,000"}


def run_row(settings, model, trials, budget):
    config = TrainConfig(model=model, protocol="1997", seed=0, **settings)
    config = TrainConfig(**{**config.__dict__, "steps": -(-budget // config.batch)})
    runs = fit_trials(config, range(trials))
    stopped = [r["sequences_to_stop"] for r in runs if r["sequences_to_stop"] is not None]
    return {
        "task": settings["task"], "level": settings.get("level"),
        "length": settings.get("length"), "model": model, "trials": trials, "budget": budget,
        "batch": config.batch, "optimizer": config.optimizer, "lr": config.lr,
        "clip": config.clip, "num_params": runs[0]["num_params"],
        "stopped": len(stopped),
        "mean": statistics.mean(stopped) if stopped else None,
        "min": min(stopped, default=None), "max": max(stopped, default=None),
        "mean_test_errors": statistics.mean(r["test_errors"] for r in runs),
        "skipped_updates": sum(r["skipped_updates"] for r in runs),
        "wall_seconds": runs[0]["wall_seconds"],
        "per_trial": [(r["sequences_to_stop"], r["test_errors"]) for r in runs],
    }


def table(results):
    def fmt(v):
        return "-" if v is None else f"{v:,.0f}"

    header = ("task", "model (weights)", "training", "trials stopped", "mean seqs to stop",
              "min", "max", "mean test errors / 2,560", "wall s", "paper: LSTM 1997, mean")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in results:
        task = (f"6a {r['level']}" if r["task"] == "temporal-order" else
                f"adding T = {r['length']}")
        paper = PAPER.get((r["task"], r["level"] or r["length"]), "")
        training = (f"{r['optimizer']} {r['lr']:g}, batch {r['batch']}, "
                    f"clip {r['clip'] if r['clip'] else 'none'}, budget {r['budget']:,}")
        lines.append("| " + " | ".join([
            task, f"{r['model']} ({r['num_params']:,})", training,
            f"{r['stopped']}/{r['trials']}", fmt(r["mean"]), fmt(r["min"]), fmt(r["max"]),
            f"{r['mean_test_errors']:.1f}", f"{r['wall_seconds']:.0f}", paper]) + " |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--jsonl", default=None, help="append every row here")
    parser.add_argument("--out", default=None, help="write the markdown table here")
    args = parser.parse_args()
    results = []
    for name in args.rows:
        for settings, model, trials, budget in ROWS[name]:
            result = run_row(settings, model, trials, budget)
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
