"""Why ``lstm1997,logistic`` (the paper's text: a logistic output unit) is slower than the
paper on the adding problem (T = 100): that run with one setting changed, 5 trials side by
side, a 300,000-sequence budget, ``--protocol 1997`` (docs/results.md reports what each
changed; the library's default ``lstm1997``, with a linear output unit, is the one that
reproduces the paper).

    .venv/bin/python benchmarks/lstm1997_adding_probe.py outbias lr=0.1 lr=1 lr=2 lr=4 g=1 h=id

``outbias``: output-gate biases initialised like the input gates' (-3, -6) instead of
``U[-0.1, 0.1]``; ``nodrift``: the cell inputs' biases and recurrent weights initialised to 0
(so that at the start ``g`` of a cell input has no offset for the cell state to integrate over
the sequence: not the paper's network, a diagnostic of state drift); ``lr=X``: the learning
rate (the paper's is 0.5); the squashing ranges: ``g=1`` the cell input squashed to [-1, 1]
(``2σ - 1``) instead of [-2, 2], ``h=id`` the cell output not squashed (``h(s) = s``) instead
of ``2σ(s) - 1``. ``benchmarks/lstm1997_adding_tails.py --variant`` takes the same names but
``lr=X`` (it has ``--lr``).
"""

from __future__ import annotations

import argparse
import contextlib
import json

import jax

import attnrnn.lstm1997 as paper_lstm
from attnrnn.train import TrainConfig, fit_trials
from attnrnn.train import models


# The squashing variants, in place of attnrnn.lstm1997's ``_g`` (cell input) and ``_h``
# (cell output) for the duration of one probe.
SQUASHING = {"g=1": ("_g", lambda z: 2 * jax.nn.sigmoid(z) - 1), "h=id": ("_h", lambda s: s)}


def _outbias(params, inputs):
    # A copy: two leaves sharing one buffer cannot both be donated to fit's first chunk.
    return params._replace(b_out=params.b_in.copy())


def _nodrift(params, inputs):
    return params._replace(b_c=0 * params.b_c, W_c=params.W_c.at[:, inputs:].set(0))


INITS = {"outbias": _outbias, "nodrift": _nodrift}
VARIANTS = (*SQUASHING, *INITS)


@contextlib.contextmanager
def patched(variant):
    """``lstm1997`` as ``variant`` (one of ``VARIANTS``, or None: as it is) while the block
    runs: its squashing or its initialisation replaced."""
    if variant is not None and variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    # A patched step or init must not meet code compiled for another variant: ``make_model``
    # is cached by its arguments and ``evaluate`` is jitted with the model static.
    models.make_model.cache_clear()
    jax.clear_caches()
    original_init = models.lstm1997_init
    squashing = SQUASHING.get(variant)
    if squashing:
        name, function = squashing
        original_squashing = getattr(paper_lstm, name)
        setattr(paper_lstm, name, function)
    if variant in INITS:
        def init(key, n, **kwargs):
            return INITS[variant](original_init(key, n, **kwargs), n)
        models.lstm1997_init = init
    try:
        yield
    finally:
        models.lstm1997_init = original_init
        if squashing:
            setattr(paper_lstm, name, original_squashing)
        models.make_model.cache_clear()
        jax.clear_caches()


def probe(variant, trials=5, budget=300_000):
    lr = float(variant.split("=")[1]) if variant.startswith("lr=") else 0.5
    with patched(None if variant.startswith("lr=") else variant):
        config = TrainConfig(model="lstm1997,logistic", protocol="1997", task="adding",
                             length=100, lr=lr, steps=budget)
        runs = fit_trials(config, range(trials))
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
