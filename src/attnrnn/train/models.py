"""Sequence models: a recurrence (gated, AttentionRNN(k)/(∞), or a baseline) or a convolutional
classifier, plus a linear readout. A [`Model`][attnrnn.train.models.Model] is a value — its
configuration, equal and hashable by value — with ``init``/``apply``/``predict``/``loss``; it is
built from real arguments by [`make_model`][attnrnn.train.models.make_model], or from a model
string ([`attnrnn.train.model_spec`][attnrnn.train.model_spec]) by
[`model_for`][attnrnn.train.models.model_for]. Every recurrence is one entry of
[`attnrnn.train.cells`][attnrnn.train.cells].

A classifier reads out the last state: with a mask, a skipped step repeats the carried
state, so ``hs[-1]`` is the last valid state for pre- and post-padded sequences alike. A
per-step model reads out every state. Batch with ``jax.vmap`` (``loss`` does).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from attnrnn._checks import as_int
from attnrnn.bounds import _check_options, check_heads
from attnrnn.conv import ConvParams, conv, conv_init, conv_output_shape
from attnrnn.train.cells import CELLS
from attnrnn.train.losses import batch_loss
from attnrnn.train.model_spec import BOUNDED, GATE_OFFSET, ModelSpec, cell_names, parse_model

__all__ = [
    "FunctionModel",
    "Model",
    "Readout",
    "SequenceModelParams",
    "make_model",
    "model_for",
]


class Readout(NamedTuple):
    """Linear readout ``outputs = W h + b``: ``W (outputs, m)``, ``b (outputs,)``."""

    W: jax.Array
    b: jax.Array


class SequenceModelParams(NamedTuple):
    """``cell``: the recurrence's parameters — one cell's for one unidirectional layer, else a
    tuple of layers, each a tuple of its directions' (forward, then backward) — or the
    convolutions of ``conv``; ``readout``: the linear readout."""

    cell: NamedTuple | tuple
    readout: Readout


READOUTS = ("last", "all")

# ConvBase of the MNIST-1D benchmark (Greydanus 2020): three 1-D convolutions with ReLU,
# (kernel, stride, padding) each, then a linear classifier on the flattened features.
CONV_LAYERS = ((5, 2, 1), (3, 2, 1), (3, 2, 1))


@dataclasses.dataclass(frozen=True)
class Model:
    """A sequence model as a value: its configuration (what
    [`make_model`][attnrnn.train.models.make_model] was given, checked), equal and hashable by
    value — a function jitted with the model as a static argument (``evaluate``) compiles
    once per configuration — and its functions:

    - ``init(key) -> params``
      ([`SequenceModelParams`][attnrnn.train.models.SequenceModelParams]);
    - ``apply(params, xs, mask=None) -> outputs`` on one sequence ``xs (T, n)``: logits (or
      the net input of ``lstm1997``'s logistic output units, or the regression value),
      ``(outputs,)`` from the last valid state (or every state: ``readout="all"``), or
      ``(T, outputs)`` from every state for a per-step task;
    - ``predict(outputs)``: what the model claims in the units of the targets;
    - ``loss(params, xs, labels, mask=None, tolerance=None) -> (loss, aux)`` on a batch
      ([`batch_loss`][attnrnn.train.losses.batch_loss]; no mask: every step valid);
    - ``name``: the configuration in words (the model string, then ``,bi``, ``,layers=L``,
      ``,readout=all``, ``,position`` where they apply), for records.
    """

    spec: ModelSpec
    input_size: int
    hidden_size: int
    outputs: int
    per_step: bool = False
    regression: bool = False
    layers: int = 1
    bidirectional: bool = False
    readout: str = "last"
    length: int | None = None
    position: bool = False
    dtype: Any = jnp.dtype(jnp.float32)

    @property
    def single_cell(self) -> bool:
        """One forward layer: ``SequenceModelParams.cell`` is that cell's own parameters (else a
        tuple of layers, each a tuple of its directions')."""
        return self.layers == 1 and not self.bidirectional

    @property
    def name(self) -> str:
        return ",".join([str(self.spec), *["bi"] * self.bidirectional,
                         *[f"layers={self.layers}"] * (self.layers > 1),
                         *["readout=all"] * (self.readout == "all"),
                         *["position"] * self.position])

    def init(self, key) -> SequenceModelParams:
        return (_conv_init if self.spec.cell == "conv" else _recurrent_init)(self, key)

    def apply(self, params, xs, mask=None):
        if self.spec.cell == "conv":  # a whole sequence: the mask is not read
            return _conv_apply(params, xs)
        hs, last = _states(self, params, xs, mask)
        features = hs if self.per_step else hs.reshape(-1) if self.readout == "all" else last
        logits = features @ params.readout.W.T
        return logits + jnp.broadcast_to(params.readout.b, logits.shape)

    def predict(self, outputs):
        if self.spec.cell == "lstm1997" and (self.spec.logistic or not self.regression):
            return jax.nn.sigmoid(outputs)
        return outputs if self.regression else jax.nn.softmax(outputs, axis=-1)

    def loss(self, params, xs, labels, mask=None, tolerance=None):
        return batch_loss(self.apply, self.predict, params, xs, labels, mask, tolerance,
                          squared_error=self.spec.cell == "lstm1997", per_step=self.per_step,
                          regression=self.regression)


class FunctionModel(NamedTuple):
    """A model given as its functions (``init``, ``apply``, ``predict``, ``loss``) and a
    ``name``, e.g. a Flax module's, to train in [`fit`][attnrnn.train.loop.fit] (``model=``)
    like a [`Model`][attnrnn.train.models.Model]."""

    init: Callable
    apply: Callable
    predict: Callable
    loss: Callable
    name: str


def make_model(cell="gated", *, input_size, hidden_size, outputs, k=None, options=BOUNDED,
               bias=False, gate_offset=GATE_OFFSET, truncated=False, logistic=False,
               per_step=False, regression=False, layers=1, bidirectional=False, readout="last",
               length=None, position=False, dtype=jnp.float32) -> Model:
    """A recurrence (or a convolutional classifier) plus a linear readout, as one
    [`Model`][attnrnn.train.models.Model] value.

    The gated RNN reads ``[x, 1]``: the constant feature gives each of its matrices a bias
    column (without one its gate cannot start closed on real-valued inputs, such as the
    adding problem's); the gate's bias column starts at ``gate_offset`` — for one-hot inputs
    exactly an offset added to every entry of ``W_c``. The readout starts at
    ``N(0, 0.01 / fan_in)`` so that a fresh classifier's loss is close to ``ln(classes)`` and
    its accuracy close to ``1 / classes``. ``lstm1997`` is the paper's whole network:
    ``hidden_size`` is ignored (2 blocks of 2 cells), its input-gate biases are -2, -4 for
    a classifier and -3, -6 for a regression (the adding problem), and its output layer
    starts at ``U[-0.1, 0.1]`` like the rest. Its classifier's output units are logistic, as
    the paper's; its regression output unit is linear unless ``logistic``.

    Stacks and directions: ``layers`` recurrences of the same cell, each reading the
    previous one's states through ``tanh`` (the first reads the inputs); ``bidirectional``
    runs each layer forward and with ``reverse=True`` and concatenates the two (the last
    valid state of a bidirectional layer is the forward one's last and the backward one's
    first). ``position`` appends each step's position to its inputs — the step's index
    in the (padded) sequence scaled to ``[-1, 1]``, a feature the recurrence reads like any
    other (AttentionRNN(∞)'s scores of past states do not depend on where they were made;
    with it the states can carry that). ``conv`` is MNIST-1D's ConvBase made of
    [`attnrnn.conv`][attnrnn.conv.conv]: three 1-D convolutions of ``hidden_size`` channels
    (kernels 5, 3, 3, stride 2, padding 1, ReLU) over the sequence's ``length`` steps, then
    the readout on every feature (a sequence classifier; the mask is not read, so sequences
    must be whole).

    Args:
      cell: ``"gated"``, ``"attention"``, ``"lstm"``, ``"gru"``, ``"lstm1997"`` or
        ``"conv"``.
      input_size: ``n``, features per step.
      hidden_size: ``m`` (``conv``: channels).
      outputs: output units (classes; 1 for a regression).
      k: AttentionRNN's lags (None: AttentionRNN(∞)).
      options: [`attnrnn.AttentionOptions`][attnrnn.bounds.AttentionOptions] (default
        [`BOUNDED`][attnrnn.train.model_spec.BOUNDED]).
      bias: AttentionRNN reads ``[x, 1]`` (each input map gains a bias column, as the gated
        RNN's always has): with one feature per step, ``Q_x x`` and ``K_x x`` are otherwise
        both multiples of ``x``, so the input's score cannot tell ``x`` from ``-x``.
      gate_offset: the gated RNN's initial gate bias.
      truncated: ``lstm1997`` with the paper's truncated gradient.
      logistic: ``lstm1997``'s regression output unit logistic (``σ(net)``) instead of linear.
      per_step: read out every state (a label per step) instead of the last.
      regression: squared-error loss on one real output; otherwise a classifier.
      layers: stacked recurrences.
      bidirectional: each layer forward and backward, concatenated.
      readout: ``"last"`` (the last valid state) or ``"all"`` (every state, flattened: the
        MNIST-1D GRU's readout; needs ``length``).
      length: the sequences' length ``T`` (``readout="all"`` and ``conv``).
      position: append each step's position (in ``[-1, 1]``) to its inputs.
      dtype: the parameters' dtype.

    Returns:
      a [`Model`][attnrnn.train.models.Model], equal to any other built from the same
      arguments.
    """
    _check_cell(cell)
    n, m, classes, layers = (as_int(name, value, minimum=1) for name, value in (
        ("input_size", input_size), ("hidden_size", hidden_size), ("outputs", outputs),
        ("layers", layers)))
    _check_architecture(cell, layers, bidirectional, readout, position, length, per_step,
                        regression)
    if cell == "conv":
        _conv_features(as_int("length", length, minimum=1))
    if cell == "attention":  # heads split the state (and the keys, of the state's size)
        check_heads(_check_options(options), m, m)
    spec = ModelSpec(cell, k if cell == "attention" else None,
                     options if cell == "attention" else BOUNDED,
                     float(gate_offset) if cell == "gated" else GATE_OFFSET,
                     cell == "lstm1997" and bool(truncated), cell == "lstm1997" and bool(logistic),
                     cell == "attention" and bool(bias))
    return Model(spec, n, m, classes, bool(per_step), bool(regression), layers,
                 bool(bidirectional), readout, None if length is None else int(length),
                 bool(position), jnp.dtype(dtype))


def model_for(spec, task, hidden_size, dtype=jnp.float32, *, layers=1, bidirectional=False,
              readout="last", position=False) -> Model:
    """The [`Model`][attnrnn.train.models.Model] of a model string (or its
    [`ModelSpec`][attnrnn.train.model_spec.ModelSpec]) sized for ``task``."""
    spec = parse_model(spec)
    length = task.train[0].shape[1] if getattr(task, "train", None) is not None else None
    return make_model(spec.cell, input_size=task.features, hidden_size=hidden_size,
                      outputs=task.classes, k=spec.k, options=spec.options, bias=spec.bias,
                      gate_offset=spec.gate_offset, truncated=spec.truncated,
                      logistic=spec.logistic, per_step=task.per_step,
                      regression=task.regression, layers=layers, bidirectional=bidirectional,
                      readout=readout, length=length, position=position, dtype=dtype)


def _recurrent_init(model: Model, key) -> SequenceModelParams:
    """One cell's parameters (one forward layer), else a tuple of layers of directions."""
    spec, m, recurrence = model.spec, model.hidden_size, CELLS[model.spec.cell]
    directions = 2 if model.bidirectional else 1
    n = model.input_size + model.position
    k_cell, k_out, k_bias = jax.random.split(key, 3)
    if model.single_cell:
        cell_params = top = recurrence.init(k_cell, n, m, spec, model.regression, model.dtype)
    else:
        keys = jax.random.split(k_cell, model.layers * directions).reshape(
            model.layers, directions, -1)
        cell_params = tuple(tuple(recurrence.init(keys[i, d], n if i == 0 else m * directions,
                                                  m, spec, model.regression, model.dtype)
                                  for d in range(directions)) for i in range(model.layers))
        top = cell_params[-1][0]
    fan_in = (recurrence.width(top) * directions
              * (model.length if model.readout == "all" else 1))
    return SequenceModelParams(cell_params, _readout_init(
        k_out, k_bias, model.outputs, fan_in, spec.cell == "lstm1997", model.dtype))


def _states(model: Model, params, xs, mask):
    """The last layer's states ``(T, width)`` and its last valid state, through the stack of
    layers (``tanh`` between them; each bidirectional layer forward and reversed,
    concatenated)."""
    recurrence = CELLS[model.spec.cell]
    hs = xs
    if model.position:
        steps = jnp.linspace(-1, 1, xs.shape[0], dtype=xs.dtype)
        hs = jnp.concatenate([xs, steps[:, None]], axis=-1)
    for i, layer in enumerate(((params.cell,),) if model.single_cell else params.cell):
        inputs = hs if i == 0 else jnp.tanh(hs)
        runs = [recurrence.run(p, inputs, mask, d == 1, model.spec) for d, p in enumerate(layer)]
        hs = runs[0] if len(runs) == 1 else jnp.concatenate(runs, axis=-1)
    last = runs[0][-1] if len(runs) == 1 else jnp.concatenate([runs[0][-1], runs[1][0]])
    return hs, last


def _check_cell(cell):
    """A cell's name; a model string (the CLI's ``attention:inf``) is refused with the way to
    build it."""
    if cell not in cell_names():
        hint = (f" ({cell!r} is a model string, as the CLI's --model takes: "
                f"model_for({cell!r}, task, hidden_size) builds it)"
                if isinstance(cell, str) and ":" in cell else "")
        raise ValueError(f"cell must be one of {list(cell_names())}, got {cell!r}{hint}")


def _check_architecture(cell, layers, bidirectional, readout, position, length, per_step,
                        regression):
    """The combinations ``make_model`` refuses, each in one line."""
    if readout not in READOUTS:
        raise ValueError(f"readout must be one of {list(READOUTS)}, got {readout!r}")
    if readout == "all" and per_step:
        raise ValueError("readout all is for a label per sequence; a per-step task reads out "
                         "every state already")
    if (readout == "all" or cell == "conv") and length is None:
        raise ValueError(f"{'conv' if cell == 'conv' else 'readout all'} needs sequences of one "
                         "length (a task made from arrays)")
    if cell == "conv" and (per_step or regression):
        raise ValueError("conv is a sequence classifier; per-step and regression tasks need "
                         "a recurrence")
    if cell == "lstm1997" and (layers > 1 or bidirectional or readout != "last"):
        raise ValueError("lstm1997 is the paper's whole network: one layer, forward, read "
                         "out at the end")
    if position and cell in ("conv", "lstm1997"):
        raise ValueError(f"position is an input of the recurrences, not of {cell}")


def _readout_init(k_out, k_bias, classes, fan_in, paper_1997, dtype) -> Readout:
    """The 1997 network's output layer ``U[-0.1, 0.1]`` like its other weights; the others'
    ``N(0, 0.01 / fan_in)`` and zero biases (a fresh classifier's loss close to
    ``ln(classes)``)."""
    if paper_1997:
        return Readout(jax.random.uniform(k_out, (classes, fan_in), dtype, -0.1, 0.1),
                       jax.random.uniform(k_bias, (classes,), dtype, -0.1, 0.1))
    W = 0.1 * jax.random.normal(k_out, (classes, fan_in), dtype) / jnp.sqrt(fan_in).astype(dtype)
    return Readout(W, jnp.zeros((classes,), dtype))


def _conv_features(length) -> int:
    """Steps left after ConvBase's three convolutions of a ``length``-step sequence."""
    size = length
    for kernel, stride, padding in CONV_LAYERS:
        size = conv_output_shape((size,), (kernel,), stride=stride, padding=padding)[0]
    if size < 1:
        raise ValueError(f"conv needs sequences of at least 7 steps, got length {length}")
    return size


def _conv_init(model: Model, key) -> SequenceModelParams:
    """MNIST-1D's ConvBase of ``attnrnn.conv`` (see ``make_model``)."""
    channels, dtype = model.hidden_size, model.dtype
    features = channels * _conv_features(model.length)
    keys = jax.random.split(key, len(CONV_LAYERS) + 1)
    convs = tuple(ConvParams(*conv_init(k, model.input_size if i == 0 else channels, channels,
                                        kernel, dtype=dtype))
                  for i, (k, (kernel, _, _)) in enumerate(zip(keys, CONV_LAYERS)))
    bound = 1 / math.sqrt(features)  # PyTorch's nn.Linear, as ConvBase's
    k_w, k_b = jax.random.split(keys[-1])
    return SequenceModelParams(convs, Readout(
        jax.random.uniform(k_w, (model.outputs, features), dtype, -bound, bound),
        jax.random.uniform(k_b, (model.outputs,), dtype, -bound, bound)))


def _conv_apply(params, xs):
    h = xs.T  # (n, T): channels first
    for (w, b), (_, stride, padding) in zip(params.cell, CONV_LAYERS):
        h = jax.nn.relu(conv(h, w, stride=stride, padding=padding) + b[:, None])
    return params.readout.W @ h.reshape(-1) + params.readout.b
