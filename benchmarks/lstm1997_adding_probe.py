"""Why ``lstm1997`` is slower than the paper on the adding problem (T = 100): the paper's run
with one setting changed, 5 trials side by side, a 300,000-sequence budget, ``--protocol
1997`` (docs/results.md reports what each changed).

    .venv/bin/python benchmarks/lstm1997_adding_probe.py outbias lr=0.1 lr=1 lr=2 lr=4 g=1 h=id

``outbias``: output-gate biases initialised like the input gates' (-3, -6) instead of
``U[-0.1, 0.1]``; ``lr=X``: the learning rate (the paper's is 0.5); the squashing ranges:
``g=1`` the cell input squashed to [-1, 1] (``2σ - 1``) instead of [-2, 2], ``h=id`` the cell
output not squashed (``h(s) = s``) instead of ``2σ(s) - 1``.
"""

from __future__ import annotations

import argparse
import json

import jax
import jax.numpy as jnp

import attnrnn.lstm1997 as paper_lstm
from attnrnn.train import TrainConfig, fit_trials
from attnrnn.train import models


def _update_with(g_half_range, squash_output):
    """``attnrnn.lstm1997``'s step with other squashing functions (the same step otherwise)."""
    def update(B, C, carry, z, context, WP):
        s, _ = carry
        net = z + WP[0]
        y_in = jax.nn.sigmoid(net[B * C : B * C + B])
        y_out = jax.nn.sigmoid(net[B * C + B :])
        g = g_half_range * (2 * jax.nn.sigmoid(net[: B * C]) - 1)
        s = s + jnp.repeat(y_in, C) * g
        h = 2 * jax.nn.sigmoid(s) - 1 if squash_output else s
        y_c = jnp.repeat(y_out, C) * h
        return (s, jnp.concatenate([y_c, y_in, y_out])), y_c
    return update


def probe(variant, trials=5, budget=300_000):
    lr = float(variant.split("=")[1]) if variant.startswith("lr=") else 0.5
    # A patched step or init must not meet code compiled for another variant: ``make_model``
    # is cached by its arguments and ``evaluate`` is jitted with the model static.
    models.make_model.cache_clear()
    jax.clear_caches()
    original, original_update = models.lstm1997_init, paper_lstm._update
    if variant in ("g=1", "h=id"):
        paper_lstm._update = _update_with(1.0 if variant == "g=1" else 2.0, variant != "h=id")
    if variant == "outbias":
        def init(key, n, **kwargs):
            params = original(key, n, **kwargs)
            return params._replace(b_out=params.b_in)
        models.lstm1997_init = init
    try:
        config = TrainConfig(model="lstm1997", protocol="1997", task="adding", length=100,
                             lr=lr, steps=budget)
        runs = fit_trials(config, range(trials))
    finally:
        models.lstm1997_init, paper_lstm._update = original, original_update
    return {"variant": variant, "lr": lr, "budget": budget,
            "stops": [r["sequences_to_stop"] for r in runs],
            "test_errors": [r["test_errors"] for r in runs],
            "wall_seconds": runs[0]["wall_seconds"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="+")
    for variant in parser.parse_args().variants:
        print(json.dumps(probe(variant)), flush=True)


if __name__ == "__main__":
    main()
