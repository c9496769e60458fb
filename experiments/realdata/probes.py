"""Probes of AttentionRNN(∞)'s training on the real sets, beyond what a model string says
(LOG.md, 2026-12-07 "why seeds fail"): a recipe under every default of ``attnrnn train --data``,
optionally trained by Adam with another ``b2``, by AdamW (decoupled weight decay ``wd``), with
the learning rate decayed to 0 by a cosine over the run, or raised from 0 over the first
``--warmup`` steps (``fit``'s ``optimizer=``).

    python experiments/realdata/probes.py NAME MODEL [--cosine] [--b2 B] [--wd W] [--warmup S]
        [--sets ArrowHead ...] [--seeds 0 1 ...] [--set FIELD=VALUE ...]

Appends one row per run to ``--jsonl`` (default ``probes-2026-12-07c.jsonl`` beside this file).
"""

import argparse
import json
from pathlib import Path

import optax

from attnrnn.train import TrainConfig, fit

HERE = Path(__file__).resolve().parent


def optimizer(config, args):
    """The config's optimizer (adam, clipped) with the probe's change; None: unchanged."""
    if not (args.cosine or args.b2 or args.wd or args.warmup):
        return None
    lr = optax.cosine_decay_schedule(config.lr, config.steps) if args.cosine else config.lr
    if args.warmup:  # linearly from 0 to the config's rate over the first WARMUP steps
        lr = optax.join_schedules([optax.linear_schedule(0.0, config.lr, args.warmup),
                                   optax.constant_schedule(config.lr)], [args.warmup])
    inner = (optax.adamw(lr, weight_decay=args.wd) if args.wd
             else optax.adam(lr, b2=args.b2 or 0.999))
    return optax.chain(optax.clip_by_global_norm(config.clip), inner)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name")
    parser.add_argument("model")
    parser.add_argument("--cosine", action="store_true")
    parser.add_argument("--b2", type=float)
    parser.add_argument("--wd", type=float)
    parser.add_argument("--warmup", type=int, help="steps of a linear learning-rate warmup")
    parser.add_argument("--sets", nargs="+", default=["ArrowHead"])
    parser.add_argument("--seeds", nargs="+", type=int, default=list(range(10)))
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE")
    parser.add_argument("--jsonl", type=Path, default=HERE / "probes-2026-12-07c.jsonl")
    args = parser.parse_args()
    overrides = {k: json.loads(v) for k, v in (s.split("=") for s in args.set)}
    for name in args.sets:
        accs = []
        for seed in args.seeds:
            c = TrainConfig(data=str(HERE / "data" / f"{name}.npz"), model=args.model,
                            seed=seed, **overrides).resolve()
            summary = fit(c, optimizer=optimizer(c, args), progress=False)[2]
            accs.append(round(100 * summary["test_accuracy"], 1))
            with args.jsonl.open("a") as f:
                f.write(json.dumps({"name": args.name, "set": name, "seed": seed,
                                    "acc": accs[-1], "final_loss": summary["final_loss"]}) + "\n")
        print(args.name, name, accs, "mean", round(sum(accs) / len(accs), 1), flush=True)


if __name__ == "__main__":
    main()
