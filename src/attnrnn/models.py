"""Sequence models: a recurrence (gated, AttentionRNN(k)/(∞), or an LSTM baseline) plus a
linear readout, as pure ``model_init`` / ``model_apply`` functions on one example.

A classifier reads out the last state: with a mask, a skipped step repeats the carried
state, so ``hs[-1]`` is the last valid state for pre- and post-padded sequences alike. A
per-step model reads out every state. Batch with ``jax.vmap`` (:func:`batch_loss` does).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from attnrnn._checks import as_int
from attnrnn.attention import AttentionOptions, attention_rnn, attention_rnn_init
from attnrnn.gated import gated_rnn, gated_rnn_init
from attnrnn.lstm import lstm, lstm_init

__all__ = [
    "ModelSpec",
    "Readout",
    "SequenceModelParams",
    "parse_model",
    "model_init",
    "model_apply",
    "batch_loss",
]

CELLS = ("gated", "attention", "lstm")


# The gated RNN's gate starts near σ(2) = 0.88 (keep most of the state): measured in
# docs/results.md, it makes the hard temporal-order level about 10x faster to learn.
GATE_OFFSET = 2.0


class ModelSpec(NamedTuple):
    """Static model choice: ``cell`` in ``gated, attention, lstm``; ``k`` the attention lags
    (None for AttentionRNN(∞)); ``options`` the attention stabilisers; ``gate_offset`` the
    gated RNN's initial gate offset (see :func:`attnrnn.gated_rnn_init`). ``str(spec)`` is
    the CLI form, e.g. ``attention:inf``, ``attention:2,norm,scale=0.18,cap=20`` or
    ``gated,offset=0``."""

    cell: str
    k: int | None = None
    options: AttentionOptions = AttentionOptions()
    gate_offset: float = GATE_OFFSET

    def __str__(self):
        if self.cell == "gated" and self.gate_offset != GATE_OFFSET:
            return f"gated,offset={self.gate_offset:g}"
        if self.cell != "attention":
            return self.cell
        text = f"attention:{'inf' if self.k is None else self.k}"
        if self.options.normalize_states:
            text += ",norm"
        if self.options.score_scale != 1.0:
            text += f",scale={self.options.score_scale:g}"
        if self.options.score_cap is not None:
            text += f",cap={self.options.score_cap:g}"
        return text


def _parse_options(parts, spec):
    options = {}
    for part in parts:
        name, _, value = part.partition("=")
        try:
            if name == "norm" and not value:
                options["normalize_states"] = True
            elif name in ("scale", "cap") and value:
                options["score_" + name] = float(value)
            else:
                raise ValueError
        except ValueError:
            raise ValueError(
                f"model option {part!r} in {spec!r} is not one of 'norm', 'scale=S', 'cap=C'"
            ) from None
    return AttentionOptions(**options)


def parse_model(spec) -> ModelSpec:
    """``"gated"``, ``"lstm"``, ``"attention:K"`` or ``"attention:inf"`` as a
    :class:`ModelSpec`; attention may add options after commas: ``norm`` (normalise the
    states entering the lag terms), ``scale=S`` (multiply scores), ``cap=C`` (soft cap)."""
    if isinstance(spec, ModelSpec):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"model must be a string such as 'gated', got {type(spec).__name__}")
    head, *extra = spec.split(",")
    cell, _, lags = head.partition(":")
    if cell == "attention":
        options = _parse_options(extra, spec)
        if lags in ("inf", "∞"):
            return ModelSpec("attention", None, options)
        if lags.isdigit():
            return ModelSpec("attention", int(lags), options)
    elif cell == "gated" and not lags and len(extra) <= 1:
        name, _, value = (extra or ["offset=" + str(GATE_OFFSET)])[0].partition("=")
        try:
            if name == "offset":
                return ModelSpec("gated", gate_offset=float(value))
        except ValueError:
            pass
    elif cell in CELLS and not lags and not extra:
        return ModelSpec(cell)
    raise ValueError(
        f"model must be 'gated', 'lstm', 'attention:K' (K an int >= 0) or 'attention:inf', "
        f"optionally with ',norm', ',scale=S', ',cap=C' (attention) or ',offset=B' (gated), "
        f"got {spec!r}"
    )


class Readout(NamedTuple):
    """Linear readout ``logits = W h + b``: ``W (classes, m)``, ``b (classes,)``."""

    W: jax.Array
    b: jax.Array


class SequenceModelParams(NamedTuple):
    cell: NamedTuple
    readout: Readout


def model_init(key, spec, *, input_size, hidden_size, num_classes, dtype=jnp.float32):
    """Initial parameters for ``spec`` (a :class:`ModelSpec` or its string form).

    The gated RNN starts with ``gate_offset`` 2 unless the spec says otherwise (``gated,offset=0``
    is the plain initialisation). The readout starts at ``N(0, 0.01 / m)`` so that the first
    predictions are nearly uniform: a fresh classifier's loss is close to ``ln(classes)`` and its accuracy close to
    ``1 / classes``.
    """
    spec = parse_model(spec)
    n = as_int("input_size", input_size, minimum=1)
    m = as_int("hidden_size", hidden_size, minimum=1)
    classes = as_int("num_classes", num_classes, minimum=2)
    k_cell, k_out = jax.random.split(key)
    if spec.cell == "gated":
        cell = gated_rnn_init(k_cell, n, m, gate_offset=spec.gate_offset, dtype=dtype)
    elif spec.cell == "lstm":
        cell = lstm_init(k_cell, n, m, dtype=dtype)
    else:
        cell = attention_rnn_init(k_cell, n, m, k=spec.k, dtype=dtype)
    W = 0.1 * jax.random.normal(k_out, (classes, m), dtype) / jnp.sqrt(m).astype(dtype)
    return SequenceModelParams(cell, Readout(W, jnp.zeros((classes,), dtype)))


def model_apply(params: SequenceModelParams, xs, mask=None, *, spec, per_step=False):
    """Logits for one sequence ``xs (T, n)``: ``(classes,)`` from the last valid state, or
    ``(T, classes)`` from every state when ``per_step``."""
    spec = parse_model(spec)
    if spec.cell == "gated":
        hs = gated_rnn(params.cell, xs, mask=mask)
    elif spec.cell == "lstm":
        hs = lstm(params.cell, xs, mask=mask)
    else:
        hs = attention_rnn(params.cell, xs, k=spec.k, mask=mask, options=spec.options)
    logits = (hs if per_step else hs[-1]) @ params.readout.W.T
    return logits + jnp.broadcast_to(params.readout.b, logits.shape)


def batch_loss(params, xs, labels, mask, *, spec, per_step=False):
    """Mean cross-entropy and accuracy over a batch (over valid steps for per-step tasks).

    Returns:
      ``(loss, (accuracy, errors))``, ``errors`` the count of wrong predictions.
    """
    logits = jax.vmap(lambda x, m: model_apply(params, x, m, spec=spec, per_step=per_step))(
        xs, mask
    )
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    wrong = jnp.argmax(logits, axis=-1) != labels
    weights = mask.astype(losses.dtype) if per_step else jnp.ones_like(losses)
    total = jnp.sum(weights)
    errors = jnp.sum(wrong * weights)
    return jnp.sum(losses * weights) / total, (1 - errors / total, errors)
