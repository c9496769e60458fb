"""The model strings of the CLI and of ``model_for`` (``"attention:inf,raw"``, ``"gated"``, …):
parsed by [`parse_model`][attnrnn.train.model_spec.parse_model] into the
[`attnrnn.train.cells`][attnrnn.train.cells] entry they name, and formatted back by
``str(spec)`` (``parse_model(str(spec)) == spec`` for every spec). Each entry parses and
formats its own options; this module reads the name and hands the rest to it.

Grammar: ``cell[:K][,option]…`` — ``attention:K`` (``K`` lags, an int ≥ 0) or
``attention:inf`` (AttentionRNN(∞)) with the options ``raw`` (first: start from the unbounded
model of the equations), ``nonexp``, ``qk=B``, ``v=C``, ``norm``, ``scale=S``, ``cap=C``,
``heads=H`` and ``recency=RATE/RATE/…`` (one rate per head, ``/`` between them) (see
[`AttentionOptions`][attnrnn.bounds.AttentionOptions]), and ``bias`` (the cell reads ``[x, 1]``,
as the gated RNN always does: every input map gains a bias column); ``gated`` with
``offset=B``; ``lstm1997`` with ``truncated`` and ``logistic``; ``lstm``, ``gru`` and ``conv``
alone.
"""

from __future__ import annotations

import functools

from attnrnn.bounds import RAW
from attnrnn.train.cells import BOUNDED, CELLS, GATE_OFFSET, ModelSpec

__all__ = ["BOUNDED", "RAW", "GATE_OFFSET", "MODEL_OPTIONS", "ModelSpec", "cell_names",
           "parse_model"]


def cell_names() -> tuple:
    """Every cell a model string can name: the entries of
    [`attnrnn.train.cells`][attnrnn.train.cells]."""
    return tuple(CELLS)


# Every option a model string can carry, by cell, as --help and the errors show them.
MODEL_OPTIONS = {name: entry.OPTIONS for name, entry in CELLS.items() if entry.OPTIONS}


def parse_model(spec) -> ModelSpec:
    """A model string (the module's grammar) as the
    [`attnrnn.train.cells`][attnrnn.train.cells] entry it names (``Gated(offset=0.0)`` for
    ``gated,offset=0``); an entry is returned as it is. Attention is bounded by default
    ([`BOUNDED`][attnrnn.train.cells.BOUNDED]); ``lstm1997``'s options come at most once each,
    in any order."""
    if isinstance(spec, ModelSpec):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"model must be a string such as 'gated', got {type(spec).__name__}")
    return _parse(spec)


@functools.lru_cache(maxsize=1024)
def _parse(spec: str) -> ModelSpec:
    """``parse_model`` of a string, once per string: a config, its resolved form and the run
    built from it name the same few strings many times, and an entry is an immutable value."""
    head, *options = spec.split(",")
    name, _, lags = head.partition(":")
    parsed = CELLS[name].parse(lags, options) if name in CELLS else None
    if parsed is not None:
        return parsed
    raise ValueError(
        "model must be 'gated', 'lstm', 'gru', 'lstm1997', 'conv', 'attention:K' (K an int "
        ">= 0) or 'attention:inf', with options: "
        + "; ".join(f"{cell} {options}" for cell, options in MODEL_OPTIONS.items())
        + f"; got {spec!r}"
        + (" (the cell 'attention' is 'attention:K' or 'attention:inf' here)"
           if spec == "attention" else ""))
