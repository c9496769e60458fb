"""Probes of AttentionRNN(∞)'s training on the real sets, beyond what a model string says
(LOG.md, 2026-12-07 "why seeds fail"): a recipe under every default of ``attnrnn train --data``,
optionally with Adam's ``b2``, decoupled weight decay, a cosine decay of the learning rate over
the 600 steps, or a ``tanh`` on the values (``0``: the input's, ``h``: the past states'),
patched into the library for this process only.

    python experiments/realdata/probes.py NAME MODEL [--cosine] [--b2 B] [--wd W] [--tanh 0h]
        [--sets ArrowHead ...] [--seeds 0 1 ...] [--set FIELD=VALUE ...]

Appends one row per run to ``--jsonl`` (default ``probes-2026-12-07c.jsonl`` beside this file).
"""

import argparse
import json
from pathlib import Path

import jax
import optax

import attnrnn.attention as attention
import attnrnn.train.config as config
import attnrnn.train.step as step
from attnrnn.train import TrainConfig, fit

HERE = Path(__file__).resolve().parent


def patch(args):
    if args.cosine:
        make = step.make_optimizer
        config.make_optimizer = lambda name, lr, clip: make(
            name, optax.cosine_decay_schedule(lr, 600), clip)
    if args.wd:
        step.OPTIMIZERS["adam"] = lambda lr: optax.adamw(lr, weight_decay=args.wd)
    if args.b2:
        step.OPTIMIZERS["adam"] = lambda lr: optax.adam(lr, b2=args.b2)
    if "0" in args.tanh:
        lag0 = attention._lag0
        attention._lag0 = lambda p, x, options=attention.RAW: (
            lambda w, v: (w, jax.numpy.tanh(v)))(*lag0(p, x, options))
    if "h" in args.tanh:
        lags = attention._lag_scores_values
        attention._lag_scores_values = lambda qkv, m, options=attention.RAW: (
            lambda w, v: (w, jax.numpy.tanh(v)))(*lags(qkv, m, options))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name")
    parser.add_argument("model")
    parser.add_argument("--cosine", action="store_true")
    parser.add_argument("--b2", type=float)
    parser.add_argument("--wd", type=float)
    parser.add_argument("--tanh", default="")
    parser.add_argument("--sets", nargs="+", default=["ArrowHead"])
    parser.add_argument("--seeds", nargs="+", type=int, default=list(range(10)))
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE")
    parser.add_argument("--jsonl", type=Path, default=HERE / "probes-2026-12-07c.jsonl")
    args = parser.parse_args()
    patch(args)
    overrides = {k: json.loads(v) for k, v in (s.split("=") for s in args.set)}
    for name in args.sets:
        accs = []
        for seed in args.seeds:
            c = TrainConfig(data=str(HERE / "data" / f"{name}.npz"), model=args.model,
                            seed=seed, **overrides)
            summary = fit(c, progress=False)[2]
            accs.append(round(100 * summary["test_accuracy"], 1))
            with args.jsonl.open("a") as f:
                f.write(json.dumps({"name": args.name, "set": name, "seed": seed,
                                    "acc": accs[-1], "final_loss": summary["final_loss"]}) + "\n")
        print(args.name, name, accs, "mean", round(sum(accs) / len(accs), 1), flush=True)


if __name__ == "__main__":
    main()
