"""The 1997 LSTM on the adding problem with one setting changed (``--protocol 1997``).

Trials side by side; docs/results.md reports each probe. First, why ``lstm1997,logistic`` (the
paper's text: a logistic output unit) is slower than the paper at T = 100 (5 trials, a
300,000-sequence budget: the defaults; the library's ``lstm1997``, with a linear output unit,
is the one that reproduces the paper there); then what sets the length of ``lstm1997``'s
plateau at T = 500 and 1000 (the second command).

    .venv/bin/python experiments/lstm1997_adding/probe.py outbias lr=0.1 lr=1 lr=2 lr=4 g=1 h=id
    .venv/bin/python experiments/lstm1997_adding/probe.py --model lstm1997 --length 500 \
        --budget 1000000 --seeds 0:10 scale=0.5

``--model``, ``--length``, ``--budget`` and ``--seeds`` choose the row (the defaults are the
first command's: ``lstm1997,logistic``, T = 100, 300,000, trials 0-4).

``outbias``: output-gate biases initialised like the input gates' (-3, -6) instead of
``U[-0.1, 0.1]``; ``nodrift``: the cell inputs' biases and recurrent weights initialised to 0
(so that at the start ``g`` of a cell input has no offset for the cell state to integrate over
the sequence: not the paper's network, a diagnostic of state drift); ``lr=X``: the learning
rate (the paper's is 0.5); the squashing ranges: ``g=1`` the cell input squashed to [-1, 1]
(``2σ - 1``) instead of [-2, 2], ``h=id`` the cell output not squashed (``h(s) = s``) instead
of ``2σ(s) - 1``; ``scale=X``: every weight and bias of the memory cells and gates, but the
input-gate biases, ``U[-X, X]`` instead of ``U[-0.1, 0.1]`` (the output unit's unchanged);
``ingate=A,B``: the input-gate biases ``A, B`` instead of the adding problem's -3, -6 (the
paper: "the precise values hardly matter"). ``experiments/lstm1997_adding/tails.py --variant``
takes the same names but ``lr=X`` (it has ``--lr``).
"""

from __future__ import annotations

import argparse
import json

import jax

from attnrnn.lstm1997 import lstm1997, lstm1997_init
from attnrnn.train import FunctionModel, TrainConfig, batch_loss, fit_trials

# The squashing variants: lstm1997's ``cell_input`` (g) or ``cell_output`` (h) argument.
SQUASHING = {"g=1": ("cell_input", lambda z: 2 * jax.nn.sigmoid(z) - 1),
             "h=id": ("cell_output", lambda s: s)}


def _outbias(params, inputs):
    return params._replace(b_out=params.b_in)


def _nodrift(params, inputs):
    return params._replace(b_c=0 * params.b_c, W_c=params.W_c.at[:, inputs:].set(0))


def _scaled(scale):
    # Every weight and bias U[-scale, scale] instead of U[-0.1, 0.1]; the input-gate biases
    # stay the paper's. The paper's draw rescaled, not ``lstm1997_init(scale=...)``: the same
    # draw up to float32 rounding, but the recorded runs (init-scale.jsonl) were
    # made this way, and online SGD at 0.5 amplifies rounding.
    def rewrite(params, inputs):
        return params._replace(**{name: leaf * (scale / 0.1) for name, leaf in
                                  params._asdict().items() if name != "b_in"})
    return {}, rewrite


def _input_gate_bias(*biases):
    # lstm1997_init's own argument (which checks there is one bias per block).
    return {"input_gate_bias": biases}, None


# Each initialisation variant: keyword arguments for ``lstm1997_init`` and a rewrite of the
# parameters it draws (or None).
INITS = {"outbias": ({}, _outbias), "nodrift": ({}, _nodrift)}
# Initialisations with a number in the name: ``scale=X`` and ``ingate=A,B``.
NUMBERED_INITS = {"scale": _scaled, "ingate": _input_gate_bias}
VARIANTS = (*SQUASHING, *INITS, *(f"{name}=..." for name in NUMBERED_INITS))


def _init_variant(variant):
    """The ``(keyword arguments, rewrite)`` of the initialisation ``variant`` names, or None
    when it is not one."""
    if variant in INITS:
        return INITS[variant]
    name, _, numbers = (variant or "").partition("=")
    if name not in NUMBERED_INITS:
        return None
    try:
        return NUMBERED_INITS[name](*(float(number) for number in numbers.split(",")))
    except (TypeError, ValueError):
        raise ValueError(f"variant {variant!r}: expected {name}= and numbers") from None


def variant_model(model, variant):
    """The 1997 network ``model`` (a [`Model`] of ``lstm1997``) as ``variant`` (one of
    ``VARIANTS``, or None: as it is): a ``FunctionModel`` with its squashing or its
    initialisation replaced, built from the public functions."""
    init_variant = _init_variant(variant)
    if variant is not None and variant not in SQUASHING and init_variant is None:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if variant is None:
        return model
    squashing = dict([SQUASHING[variant]]) if variant in SQUASHING else {}
    overrides, rewrite = init_variant or ({}, None)
    regression = model.regression

    def init(key):
        params = model.init(key)
        if init_variant is None:
            return params
        # the cell's draw as make_model makes it (the first of its three keys), varied
        cell = lstm1997_init(jax.random.split(key, 3)[0], model.input_size, dtype=model.dtype,
                             **{"input_gate_bias": (-3.0, -6.0) if regression else (-2.0, -4.0),
                                **overrides})
        return params._replace(cell=cell if rewrite is None else rewrite(cell, model.input_size))

    def apply(params, xs, mask=None):  # the model's readout of the last valid state
        hs = lstm1997(params.cell, xs, mask=mask, truncated=model.spec.truncated, **squashing)
        return params.readout.W @ hs[-1] + params.readout.b

    def loss(params, xs, labels, mask=None, tolerance=None):
        return batch_loss(apply, model.predict, params, xs, labels, mask, tolerance,
                          squared_error=True, regression=regression)

    return FunctionModel(init, apply, model.predict, loss, f"{model.name} ({variant})")


def probe(variant, budget=300_000, model="lstm1997,logistic", length=100, seeds=range(5),
          max_seconds=None):
    """``model`` as ``variant`` on the adding problem at ``length``: the trials ``seeds``
    side by side under ``--protocol 1997``."""
    lr = float(variant.split("=")[1]) if variant.startswith("lr=") else 0.5
    config = TrainConfig(model=model, protocol="1997", task="adding", length=length, lr=lr,
                         steps=budget)
    built = variant_model(config.build_model(), None if variant.startswith("lr=") else variant)
    runs = fit_trials(config, seeds, max_seconds=max_seconds, model=built)
    return {"model": model, "length": length, "variant": variant, "lr": lr, "budget": budget,
            "seeds": list(seeds),
            "stops": [r["sequences_to_stop"] for r in runs],
            "sequences_run": [r["sequences_run"] for r in runs],
            "test_errors": [r["test_errors"] for r in runs],
            "wall_seconds": runs[0]["wall_seconds"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="+")
    parser.add_argument("--model", default="lstm1997,logistic")
    parser.add_argument("--length", type=int, default=100, help="the adding problem's T")
    parser.add_argument("--budget", type=int, default=300_000)
    parser.add_argument("--seeds", default="0:5", metavar="A:B", help="trials A to B - 1")
    parser.add_argument("--max-seconds", type=float)
    args = parser.parse_args()
    low, high = map(int, args.seeds.split(":"))
    for variant in args.variants:
        print(json.dumps(probe(variant, budget=args.budget, model=args.model, length=args.length,
                               seeds=range(low, high), max_seconds=args.max_seconds)),
              flush=True)


if __name__ == "__main__":
    main()
