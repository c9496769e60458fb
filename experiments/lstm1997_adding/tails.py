"""Where the 1997 LSTM's adding-problem errors are (``--protocol 1997``): one trial per seed
and output unit, then its weights on fresh sequences (``--fresh``, 100,000) by target band.

    .venv/bin/python experiments/lstm1997_adding/tails.py --seeds 0 1 --budget 300000
    .venv/bin/python experiments/lstm1997_adding/tails.py --models lstm1997 --length 500 \
        --seeds 0 --budget 1000000 --max-seconds 420 --x64

Per trial: the training error rate per 10,000 sequences (a sequence is wrong under ABS(0.04)),
the sequences until the 2,000 most recent had at most 1% wrong (the task learnt, short of the
stopping rule's 2,000 in a row), the sequences to stop (None: not within the budget), and the
final weights' error rate for targets below 0.1, between 0.1 and 0.9, and above 0.9, with the
mean signed error in each band. ``lstm1997,logistic`` is the paper's text (a logistic output
unit); ``lstm1997`` the library's default (linear). ``--length`` is the adding problem's T
(default 100); ``--max-seconds`` caps a trial's training wall time (the curve then ends
early); ``--x64`` trains in float64 (the library trains in float32); ``--lr`` replaces the
paper's 0.5; ``--variant`` changes the network as ``probe.py``'s variants
(``outbias``, ``nodrift``, ``g=1``, ``h=id``, ``scale=X``, ``ingate=A,B``).
"""

from __future__ import annotations

import argparse
import json

import jax
import jax.numpy as jnp
import numpy as np

from attnrnn.train import TrainConfig, fit, model_for
from attnrnn.train.protocol import stop_rule
from probe import VARIANTS, variant_model

BANDS = ((0.0, 0.1), (0.1, 0.9), (0.9, 1.0 + 1e-6))
FRESH_KEY = 2**31 - 3  # neither the test set's, the held-out set's, nor a training seed's
RULE = stop_rule("adding")  # ABS(0.04) over windows of 2,000 sequences


def trial(model, seed, budget, length=100, lr=0.5, max_seconds=None, fresh=100_000,
          variant=None, dtype=jnp.float32):
    """One trial of ``model`` as ``variant``, its parameters in ``dtype``."""
    config = TrainConfig(model=model, protocol="1997", task="adding", length=length, seed=seed,
                         steps=budget, lr=lr).resolve()
    task = config.make_task()
    built = variant_model(model_for(config.model, task, config.hidden, dtype=dtype), variant)
    state, history, summary = fit(config, model=built, progress=False, max_seconds=max_seconds)
    wrong = np.array([1.0 - r["accuracy"] for r in history if "accuracy" in r])
    trailing = np.convolve(wrong, np.ones(RULE.window), "valid")
    learnt = np.flatnonzero(trailing <= RULE.window // 100)  # at most 1% wrong
    xs, targets, mask = task.sample(jax.random.PRNGKey(FRESH_KEY), fresh)
    predict = jax.jit(jax.vmap(lambda x, m: built.predict(built.apply(state.params, x, m))))
    outputs = np.concatenate([predict(xs[i:i + 10_000], mask[i:i + 10_000])
                              for i in range(0, fresh, 10_000)])
    targets = np.asarray(targets)
    error = outputs[:, 0] - targets
    bands = {}
    for low, high in BANDS:
        band = (targets >= low) & (targets < high)
        bands[f"{low:g}-{min(high, 1):g}"] = {
            "share": round(float(band.mean()), 4),
            "wrong": round(float((np.abs(error[band]) >= RULE.gamma).mean()), 4),
            "mean_error": round(float(error[band].mean()), 4)}
    return {"model": model, "variant": variant, "seed": seed, "length": length, "lr": lr,
            "budget": budget,
            "dtype": str(jax.tree.leaves(state.params)[0].dtype),
            "sequences_run": summary["sequences_seen"], "wall_seconds": summary["wall_seconds"],
            "sequences_to_stop": summary["sequences_to_stop"],
            "learnt_at": int(learnt[0]) + RULE.window if learnt.size else None,
            "wrong_per_10000": [round(float(w), 4) for w in
                                wrong[: wrong.size // 10_000 * 10_000].reshape(-1, 10_000)
                                .mean(axis=1)],
            "fresh_wrong": round(float((np.abs(error) >= RULE.gamma).mean()), 4),
            "bands": bands}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["lstm1997,logistic", "lstm1997"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--budget", type=int, default=300_000)
    parser.add_argument("--length", type=int, default=100)
    parser.add_argument("--lr", type=float, default=0.5)
    parser.add_argument("--max-seconds", type=float)
    parser.add_argument("--x64", action="store_true")
    parser.add_argument("--variant", help=f"one of {VARIANTS}")
    parser.add_argument("--fresh", type=int, default=100_000,
                        help="fresh sequences to test by band (a multiple of 10,000)")
    args = parser.parse_args()
    if args.x64:
        jax.config.update("jax_enable_x64", True)
    for model in args.models:
        for seed in args.seeds:
            result = trial(model, seed, args.budget, args.length, args.lr, args.max_seconds,
                           args.fresh, args.variant,
                           jnp.float64 if args.x64 else jnp.float32)
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
