"""Sequence models: a recurrence (gated, AttentionRNN(k)/(∞), or a baseline) or a convolutional
classifier, plus a linear readout. A [`Model`][attnrnn.train.models.Model] is a value — its
configuration, equal and hashable by value — with ``init``/``apply``/``predict``/``loss``; it is
built by [`make_model`][attnrnn.train.models.make_model] from a cell's entry of
[`attnrnn.train.cells`][attnrnn.train.cells] (or its model string,
[`attnrnn.train.model_spec`][attnrnn.train.model_spec]) and sizes, or sized for a task by
[`model_for`][attnrnn.train.models.model_for]. What differs from cell to cell (its
parameters, run, readout, outputs and loss) its entry says; this module stacks, reverses and
reads out.

A classifier reads out the last state: with a mask, a skipped step repeats the carried
state, so ``hs[-1]`` is the last valid state for pre- and post-padded sequences alike. A
per-step model reads out every state. Batch with ``jax.vmap`` (``loss`` does).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from attnrnn._checks import as_int
from attnrnn.train.cells import ModelSpec
from attnrnn.train.losses import batch_loss
from attnrnn.train.model_spec import parse_model

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
        if not self.spec.recurrent:
            convs, readout = self.spec.init_network(key, self.input_size, self.hidden_size,
                                                    self.outputs, self.length, self.dtype)
            return SequenceModelParams(convs, Readout(*readout))
        return _recurrent_init(self, key)

    def apply(self, params, xs, mask=None):
        if not self.spec.recurrent:  # a whole sequence: the mask is not read
            return self.spec.apply_network(params.cell, params.readout, xs)
        hs, last = _states(self, params, xs, mask)
        features = hs if self.per_step else hs.reshape(-1) if self.readout == "all" else last
        logits = features @ params.readout.W.T
        return logits + jnp.broadcast_to(params.readout.b, logits.shape)

    def predict(self, outputs):
        return self.spec.predict(outputs, self.regression)

    def loss(self, params, xs, labels, mask=None, tolerance=None):
        return batch_loss(self.apply, self.predict, params, xs, labels, mask, tolerance,
                          squared_error=self.spec.squared_error, per_step=self.per_step,
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


def make_model(spec="gated", *, input_size, hidden_size, outputs, per_step=False,
               regression=False, layers=1, bidirectional=False, readout="last", length=None,
               position=False, dtype=jnp.float32) -> Model:
    """A cell (or the convolutional classifier) plus a linear readout, as one
    [`Model`][attnrnn.train.models.Model] value.

    ``spec`` is the cell with its options: an entry of
    [`attnrnn.train.cells`][attnrnn.train.cells] (``Attention(None, options)``,
    ``Gated(offset=0.0)``, ``LSTM1997(truncated=True)``, …) or its model string
    (``"attention:inf,raw"``, ``"gated,offset=0"``, ``"lstm1997,truncated"``,
    [`parse_model`][attnrnn.train.model_spec.parse_model]); each entry says how its cell
    starts and what it refuses. The readout starts at ``N(0, 0.01 / fan_in)`` so that a
    fresh classifier's loss is close to ``ln(classes)`` and its accuracy close to
    ``1 / classes`` (``lstm1997``'s, the paper's whole network, at ``U[-0.1, 0.1]``).

    Stacks and directions: ``layers`` recurrences of the same cell, each reading the
    previous one's states through ``tanh`` (the first reads the inputs); ``bidirectional``
    runs each layer forward and with ``reverse=True`` and concatenates the two (the last
    valid state of a bidirectional layer is the forward one's last and the backward one's
    first). ``position`` appends each step's position to its inputs — the step's index
    in the (padded) sequence scaled to ``[-1, 1]``, a feature the recurrence reads like any
    other (AttentionRNN(∞)'s scores of past states do not depend on where they were made;
    with it the states can carry that).

    Args:
      spec: the cell and its options (an entry or a model string).
      input_size: ``n``, features per step.
      hidden_size: ``m`` (``conv``: channels; ``lstm1997``: ignored).
      outputs: output units (classes; 1 for a regression).
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
    spec = parse_model(spec)
    n, m, classes, layers = (as_int(name, value, minimum=1) for name, value in (
        ("input_size", input_size), ("hidden_size", hidden_size), ("outputs", outputs),
        ("layers", layers)))
    if readout not in READOUTS:
        raise ValueError(f"readout must be one of {list(READOUTS)}, got {readout!r}")
    if readout == "all" and per_step:
        raise ValueError("readout all is for a label per sequence; a per-step task reads out "
                         "every state already")
    if readout == "all" and length is None:
        raise ValueError("readout all needs sequences of one length (a task made from arrays)")
    spec.check(per_step=per_step, regression=regression, layers=layers,
               bidirectional=bidirectional, readout=readout, length=length, position=position)
    spec.check_hidden(m)
    return Model(spec, n, m, classes, bool(per_step), bool(regression), layers,
                 bool(bidirectional), readout, None if length is None else int(length),
                 bool(position), jnp.dtype(dtype))


def model_for(spec, task, hidden_size, dtype=jnp.float32, *, layers=1, bidirectional=False,
              readout="last", position=False) -> Model:
    """The [`Model`][attnrnn.train.models.Model] of a model string (or its entry) sized for
    ``task``."""
    length = task.train[0].shape[1] if getattr(task, "train", None) is not None else None
    return make_model(spec, input_size=task.features, hidden_size=hidden_size,
                      outputs=task.classes, per_step=task.per_step, regression=task.regression,
                      layers=layers, bidirectional=bidirectional, readout=readout,
                      length=length, position=position, dtype=dtype)


def _recurrent_init(model: Model, key) -> SequenceModelParams:
    """One cell's parameters (one forward layer), else a tuple of layers of directions."""
    spec, m = model.spec, model.hidden_size
    directions = 2 if model.bidirectional else 1
    n = model.input_size + model.position
    k_cell, k_out, k_bias = jax.random.split(key, 3)
    if model.single_cell:
        cell_params = top = spec.init(k_cell, n, m, model.regression, model.dtype)
    else:
        keys = jax.random.split(k_cell, model.layers * directions).reshape(
            model.layers, directions, -1)
        cell_params = tuple(tuple(spec.init(keys[i, d], n if i == 0 else m * directions, m,
                                            model.regression, model.dtype)
                                  for d in range(directions)) for i in range(model.layers))
        top = cell_params[-1][0]
    fan_in = spec.width(top) * directions * (model.length if model.readout == "all" else 1)
    return SequenceModelParams(cell_params, Readout(*spec.readout_init(
        k_out, k_bias, model.outputs, fan_in, model.dtype)))


def _states(model: Model, params, xs, mask):
    """The last layer's states ``(T, width)`` and its last valid state, through the stack of
    layers (``tanh`` between them; each bidirectional layer forward and reversed,
    concatenated)."""
    hs = xs
    if model.position:
        steps = jnp.linspace(-1, 1, xs.shape[0], dtype=xs.dtype)
        hs = jnp.concatenate([xs, steps[:, None]], axis=-1)
    for i, layer in enumerate(((params.cell,),) if model.single_cell else params.cell):
        inputs = hs if i == 0 else jnp.tanh(hs)
        runs = [model.spec.run(p, inputs, mask, d == 1) for d, p in enumerate(layer)]
        hs = runs[0] if len(runs) == 1 else jnp.concatenate(runs, axis=-1)
    last = runs[0][-1] if len(runs) == 1 else jnp.concatenate([runs[0][-1], runs[1][0]])
    return hs, last
