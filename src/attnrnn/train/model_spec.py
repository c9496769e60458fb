"""The model strings of the CLI and of ``model_for`` (``"attention:inf,raw"``, ``"gated"``, …):
parsed into a [`ModelSpec`][attnrnn.train.model_spec.ModelSpec] by
[`parse_model`][attnrnn.train.model_spec.parse_model] and formatted back by ``str(spec)``, in
this one module (``parse_model(str(spec)) == spec`` for every spec).

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

import math
from typing import NamedTuple

from attnrnn.bounds import RAW, AttentionOptions
from attnrnn.train.cells import CELLS

__all__ = ["BOUNDED", "RAW", "GATE_OFFSET", "MODEL_OPTIONS", "ModelSpec", "cell_names",
           "parse_model"]

# The gated RNN's gate bias starts at 2 (σ(2) = 0.88): the state is kept from the first
# update, so a distant symbol survives until training can use it (0 learns far slower).
GATE_OFFSET = 2.0

# AttentionRNN's training default: the bounds of AttentionOptions that made it learn
# (docs/results.md); `attention:K,raw` is the model of the equations, unbounded.
BOUNDED = AttentionOptions(nonexpansive=True, score_bound=0.7, value_bound=2.0)


def cell_names() -> tuple:
    """Every cell a model string can name: the recurrences of
    [`attnrnn.train.cells`][attnrnn.train.cells] (the one registry) and ``conv``."""
    return (*CELLS, "conv")


# Every option a model string can carry, by cell, as --help and the errors show them.
MODEL_OPTIONS = {
    "attention": "raw (first), nonexp, qk=B, v=C, norm, scale=S, cap=C, heads=H, "
                 "recency=R1/R2/.. (one rate >= 0 per head), bias",
    "gated": "offset=B",
    "lstm1997": "truncated, logistic",
}

# attention's numeric options and the AttentionOptions field each sets
_NUMBERS = {"qk": "score_bound", "v": "value_bound", "scale": "score_scale", "cap": "score_cap"}


def _number(value: float) -> str:
    """Short when that is exact (``0.7``), else every digit: the string parses back equal."""
    short = f"{value:g}"
    return short if float(short) == value else repr(float(value))


class ModelSpec(NamedTuple):
    """Static model choice: ``cell`` in ``gated, attention, lstm, gru, lstm1997, conv``; ``k`` the
    attention lags (None for AttentionRNN(∞)); ``options`` the attention bounds and stabilisers
    ([`BOUNDED`][attnrnn.train.model_spec.BOUNDED] unless the string says ``raw``);
    ``gate_offset`` the gated RNN's initial gate offset (see
    [`attnrnn.gated_rnn_init`][attnrnn.gated.gated_rnn_init]); ``truncated`` the 1997 LSTM's
    truncated gradient; ``logistic`` the 1997 LSTM's regression output unit logistic instead
    of linear (see [`make_model`][attnrnn.train.models.make_model]). ``str(spec)`` is the
    string form, e.g. ``attention:inf``, ``attention:2,raw``, ``attention:inf,qk=1.5``,
    ``gated,offset=0`` or ``lstm1997,truncated,logistic``; ``bias`` AttentionRNN reading
    ``[x, 1]`` (a bias column in each input map)."""

    cell: str
    k: int | None = None
    options: AttentionOptions = BOUNDED
    gate_offset: float = GATE_OFFSET
    truncated: bool = False
    logistic: bool = False
    bias: bool = False

    def __str__(self):
        if self.cell == "lstm1997":
            return ",".join(["lstm1997"] + ["truncated"] * self.truncated
                            + ["logistic"] * self.logistic)
        if self.cell == "gated" and self.gate_offset != GATE_OFFSET:
            return f"gated,offset={_number(self.gate_offset)}"
        if self.cell != "attention":
            return self.cell
        head = f"attention:{'inf' if self.k is None else self.k}"
        # `attention:inf` alone names the training default's recipe (the CLI's DEFAULTS), so
        # AttentionRNN(∞)'s bounds are always written out: its strings are never bare.
        options = _format_options(self.options, explicit=self.k is None)
        return ",".join([head, *options, *["bias"] * self.bias])


def _format_options(o: AttentionOptions, explicit=False) -> list:
    """The options after ``attention:K``, as few as say ``o`` (none for ``BOUNDED``, unless
    ``explicit``: then the bounds are always written, from ``raw``)."""
    bounds = (o.nonexpansive, o.score_bound, o.value_bound)
    parts = []
    if explicit or bounds != (BOUNDED.nonexpansive, BOUNDED.score_bound, BOUNDED.value_bound):
        parts = ["raw"] + ["nonexp"] * o.nonexpansive
        parts += [f"{name}={_number(value)}" for name, value in
                  (("qk", o.score_bound), ("v", o.value_bound)) if value is not None]
    parts += ["norm"] * o.normalize_states
    parts += [f"scale={_number(o.score_scale)}"] if o.score_scale != 1.0 else []
    parts += [f"cap={_number(o.score_cap)}"] if o.score_cap is not None else []
    parts += [f"heads={o.heads}"] if o.heads != 1 else []
    parts += ["recency=" + "/".join(map(_number, o.recency))] if o.recency is not None else []
    return parts


def _parse_options(parts, spec):
    """Attention options after the commas, applied in order to ``BOUNDED`` (``raw`` first
    starts from the unbounded model instead)."""
    options = BOUNDED
    for position, part in enumerate(parts):
        name, _, value = part.partition("=")
        try:
            if name == "raw" and not value and position == 0:
                options = RAW
            elif name == "nonexp" and not value:
                options = options._replace(nonexpansive=True)
            elif name == "norm" and not value:
                options = options._replace(normalize_states=True)
            elif name in _NUMBERS and value:
                number = float(value)
                if not number > 0:
                    raise ValueError
                options = options._replace(**{_NUMBERS[name]: number})
            elif name == "heads" and value.isdigit() and int(value) >= 1:
                options = options._replace(heads=int(value))
            elif name == "recency" and value:
                rates = tuple(float(r) for r in value.split("/"))
                if not all(math.isfinite(r) and r >= 0 for r in rates):
                    raise ValueError
                options = options._replace(recency=rates)
            else:
                raise ValueError
        except ValueError:
            raise ValueError(
                f"model option {part!r} in {spec!r} is not one of "
                f"{MODEL_OPTIONS['attention']} (numbers > 0)") from None
    if options.recency is not None and len(options.recency) != options.heads:
        raise ValueError(
            f"recency in {spec!r} has {len(options.recency)} rates for {options.heads} "
            f"head{'s' * (options.heads > 1)}: give one rate per head (heads=H before it)")
    return options


def parse_model(spec) -> ModelSpec:
    """A model string (the module's grammar) as a
    [`ModelSpec`][attnrnn.train.model_spec.ModelSpec]; a ``ModelSpec`` is returned as it is.
    Attention is bounded by default ([`BOUNDED`][attnrnn.train.model_spec.BOUNDED]);
    ``lstm1997``'s options come at most once each, in any order."""
    if isinstance(spec, ModelSpec):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"model must be a string such as 'gated', got {type(spec).__name__}")
    head, *extra = spec.split(",")
    cell, _, lags = head.partition(":")
    if cell == "attention":
        bias = "bias" in extra
        options = _parse_options([part for part in extra if part != "bias"], spec)
        if extra.count("bias") > 1:
            raise ValueError(f"model option 'bias' comes at most once, got {spec!r}")
        if lags in ("inf", "∞"):
            return ModelSpec("attention", None, options, bias=bias)
        if lags.isdigit():
            return ModelSpec("attention", int(lags), options, bias=bias)
    elif cell == "gated" and not lags and len(extra) <= 1:
        name, _, value = (extra or [f"offset={GATE_OFFSET}"])[0].partition("=")
        try:
            if name == "offset":
                return ModelSpec("gated", gate_offset=float(value))
        except ValueError:
            pass
    elif cell == "lstm1997" and not lags and set(extra) <= {"truncated", "logistic"} and (
            len(set(extra)) == len(extra)):
        return ModelSpec(cell, truncated="truncated" in extra, logistic="logistic" in extra)
    elif cell in cell_names() and not lags and not extra:
        return ModelSpec(cell)
    raise ValueError(
        "model must be 'gated', 'lstm', 'gru', 'lstm1997', 'conv', 'attention:K' (K an int "
        ">= 0) or 'attention:inf', with options: "
        + "; ".join(f"{cell} {options}" for cell, options in MODEL_OPTIONS.items())
        + f"; got {spec!r}"
        + (" (make_model's cell 'attention' is 'attention:K' or 'attention:inf' here)"
           if spec == "attention" else ""))
