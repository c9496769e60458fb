"""Real sequence classification from outside the project: data sets that the `aeon` package
ships (read offline from its files), converted to `.npz` the way the README says, and trained
with `attnrnn train --data FILE.npz --model M` with every default (600 steps, batch 32, hidden
32), three seeds per model — the gated RNN, the GRU and AttentionRNN(∞) side by side.

    pip install -e '.[realdata]'              # aeon, the data sets' package
    python experiments/realdata/run.py        # every set and model, seeds 0-2
    python experiments/realdata/run.py --sets GunPoint --models attention:inf --seeds 0

Writes the `.npz` files beside itself (`data/`), the raw rows (`--jsonl`, one line per run)
and the table (`--out`, Markdown). Each row is one call of `fit` with the config the CLI
builds from those flags, in one process (the CLI would start JAX once per run).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SETS = ("GunPoint", "ItalyPowerDemand", "JapaneseVowels", "ArrowHead", "BasicMotions")
MODELS = ("gated", "gru", "attention:inf")


def load(name, split):
    """``(xs (N, T, C) float32, labels as given, mask (N, T) or None)``: aeon's arrays are
    ``(N, C, T)``, or a list of ``(C, T_i)`` when lengths differ (zero-padded at the end here,
    with a mask)."""
    from aeon.datasets import load_classification

    X, y = load_classification(name, split=split)
    if isinstance(X, np.ndarray):
        return np.transpose(X, (0, 2, 1)).astype(np.float32), y, None
    length = max(x.shape[1] for x in X)
    xs = np.zeros((len(X), length, X[0].shape[0]), np.float32)
    mask = np.zeros((len(X), length), bool)
    for i, x in enumerate(X):
        xs[i, : x.shape[1]] = x.T
        mask[i, : x.shape[1]] = True
    return xs, y, mask


def to_npz(name, folder) -> Path:
    """The set as an ``.npz`` of the README's keys (labels as 0..C-1 over both splits)."""
    path = folder / f"{name}.npz"
    if path.exists():
        return path
    (x_tr, y_tr, m_tr), (x_te, y_te, m_te) = load(name, "train"), load(name, "test")
    if x_tr.shape[1] != x_te.shape[1]:  # one padded length for both splits
        length = max(x_tr.shape[1], x_te.shape[1])
        pad = lambda a, m: (np.pad(a, ((0, 0), (0, length - a.shape[1]), (0, 0))),  # noqa: E731
                            np.pad(m, ((0, 0), (0, length - m.shape[1]))))
        (x_tr, m_tr), (x_te, m_te) = pad(x_tr, m_tr), pad(x_te, m_te)
    classes = sorted(set(y_tr) | set(y_te))
    arrays = {"x_train": x_tr, "y_train": np.array([classes.index(c) for c in y_tr]),
              "x_test": x_te, "y_test": np.array([classes.index(c) for c in y_te])}
    if m_tr is not None:
        arrays |= {"mask_train": m_tr, "mask_test": m_te}
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


def run(path, model, seed, overrides):
    from attnrnn.train import TrainConfig, fit

    start = time.perf_counter()
    config = TrainConfig(data=str(path), model=model, seed=seed, **overrides)
    _, _, summary = fit(config, progress=False)
    return {"set": path.stem, "model": model, "seed": seed, "overrides": overrides,
            "accuracy": summary["test_accuracy"], "seconds": time.perf_counter() - start}


def table(rows) -> str:
    models = list(dict.fromkeys(r["model"] for r in rows))
    sets = list(dict.fromkeys(r["set"] for r in rows))
    lines = ["| data | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
    for name in sets:
        cells = []
        for model in models:
            accs = [100 * r["accuracy"] for r in rows if r["set"] == name and r["model"] == model]
            cells.append(" / ".join(f"{a:.1f}" for a in accs)
                         + (f" (mean {statistics.mean(accs):.1f})" if len(accs) > 1 else ""))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def spread(rows) -> str:
    """Per set and model over every seed of ``rows``: mean (sd, lowest), and each model's mean
    less the first model's."""
    models = list(dict.fromkeys(r["model"] for r in rows))
    sets = list(dict.fromkeys(r["set"] for r in rows))
    lines = ["| data | " + " | ".join(f"{m}: mean (sd, lowest)" for m in models)
             + "".join(f" | {m} − {models[0]}" for m in models[1:]) + " |",
             "|---|" + "---|" * (2 * len(models) - 1)]
    for name in sets:
        accs = {m: [100 * r["accuracy"] for r in rows if r["set"] == name and r["model"] == m]
                for m in models}
        cells = [f"{statistics.mean(a):.1f} ({statistics.stdev(a):.1f}, {min(a):.1f})"
                 for a in accs.values()]
        cells += [f"{statistics.mean(accs[m]) - statistics.mean(accs[models[0]]):+.1f}"
                  for m in models[1:]]
        lines.append(f"| {name} ({len(accs[models[0]])} seeds) | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="+", default=list(SETS))
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="FIELD=VALUE", help="a TrainConfig field for every run, e.g. "
                        "steps=300 (a smaller probe)")
    parser.add_argument("--jsonl", type=Path, default=HERE / "results.jsonl")
    parser.add_argument("--out", type=Path, default=HERE / "results.md")
    parser.add_argument("--spread", type=Path, nargs="+", default=None, metavar="JSONL",
                        help="only tabulate mean (sd, lowest) over every seed of these files' "
                        "rows of --models and --sets, to --out")
    parser.add_argument("--tabulate", type=Path, nargs="+", default=None, metavar="JSONL",
                        help="only tabulate these files' rows of --models and --sets, seed by "
                        "seed (rows of one model rerun apart joined), to --out")
    args = parser.parse_args(argv)
    if args.spread or args.tabulate:
        rows = [json.loads(line) for path in args.spread or args.tabulate for line in path.open()]
        chosen = [r for r in rows if r["model"] in args.models and r["set"] in args.sets]
        text = spread(chosen) if args.spread else table(chosen)
        args.out.write_text(text)
        print(text)
        return
    overrides = {k: json.loads(v) if v[:1].isdigit() or v in ("true", "false") else v
                 for k, v in (o.split("=", 1) for o in args.overrides)}
    rows = []
    for name in args.sets:
        path = to_npz(name, HERE / "data")
        for model in args.models:
            for seed in args.seeds:
                row = run(path, model, seed, overrides)
                rows.append(row)
                print(json.dumps(row), flush=True)
                with args.jsonl.open("a") as f:
                    f.write(json.dumps(row) + "\n")
    args.out.write_text(table(rows))
    print(table(rows))


if __name__ == "__main__":
    main()
