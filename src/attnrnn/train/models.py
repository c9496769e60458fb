"""Sequence models: a recurrence (gated, AttentionRNN(k)/(∞), or an LSTM baseline) plus a linear
readout, as [`Model`][attnrnn.train.models.Model] values (``init``/``apply``/``loss``) built
once from real arguments ([`make_model`][attnrnn.train.models.make_model]); the CLI's strings
(``"attention:inf,raw"``) are parsed once, into a [`ModelSpec`][attnrnn.train.models.ModelSpec],
by [`parse_model`][attnrnn.train.models.parse_model].

A classifier reads out the last state: with a mask, a skipped step repeats the carried
state, so ``hs[-1]`` is the last valid state for pre- and post-padded sequences alike. A
per-step model reads out every state. Batch with ``jax.vmap`` (``batch_loss`` does).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from attnrnn._checks import as_int
from attnrnn.attention import attention_rnn, attention_rnn_init
from attnrnn.bounds import AttentionOptions
from attnrnn.conv import ConvParams, conv, conv_init, conv_output_shape
from attnrnn.gated import gated_rnn, gated_rnn_init
from attnrnn.gru import gru, gru_init
from attnrnn.lstm import lstm, lstm_init
from attnrnn.lstm1997 import lstm1997, lstm1997_init

__all__ = [
    "BOUNDED",
    "RAW",
    "Model",
    "ModelSpec",
    "Readout",
    "SequenceModelParams",
    "make_model",
    "model_for",
    "parse_model",
]

# The gated RNN's gate bias starts at 2 (σ(2) = 0.88): the state is kept from the first
# update, so a distant symbol survives until training can use it (0 learns far slower).
GATE_OFFSET = 2.0


# AttentionRNN's training default: the bounds of AttentionOptions that made it learn
# (docs/results.md); `attention:K,raw` is the homework's model.
BOUNDED = AttentionOptions(nonexpansive=True, score_bound=0.7, value_bound=2.0)
RAW = AttentionOptions()


class ModelSpec(NamedTuple):
    """Static model choice: ``cell`` in ``gated, attention, lstm, gru, lstm1997, conv``; ``k`` the
    attention lags (None for AttentionRNN(∞)); ``options`` the attention bounds and stabilisers
    ([`BOUNDED`][attnrnn.train.models.BOUNDED] unless the spec says ``raw``); ``gate_offset``
    the gated RNN's initial gate offset (see
    [`attnrnn.gated_rnn_init`][attnrnn.gated.gated_rnn_init]); ``truncated`` the 1997 LSTM's
    truncated gradient (``lstm1997,truncated``); ``logistic`` the 1997 LSTM's regression
    output unit logistic instead of linear (``lstm1997,logistic``; see
    [`make_model`][attnrnn.train.models.make_model]). ``str(spec)`` is the CLI form, e.g.
    ``attention:inf``, ``attention:2,raw``, ``attention:inf,qk=1.5``, ``gated,offset=0`` or
    ``lstm1997,truncated,logistic``."""

    cell: str
    k: int | None = None
    options: AttentionOptions = BOUNDED
    gate_offset: float = GATE_OFFSET
    truncated: bool = False
    logistic: bool = False

    def __str__(self):
        if self.cell == "lstm1997":
            return ",".join(["lstm1997"] + ["truncated"] * self.truncated
                            + ["logistic"] * self.logistic)
        if self.cell == "gated" and self.gate_offset != GATE_OFFSET:
            return f"gated,offset={self.gate_offset:g}"
        if self.cell != "attention":
            return self.cell
        text = f"attention:{'inf' if self.k is None else self.k}"
        o = self.options
        if o == BOUNDED:
            return text
        if (o.nonexpansive, o.score_bound, o.value_bound) == (
                BOUNDED.nonexpansive, BOUNDED.score_bound, BOUNDED.value_bound):
            parts = []
        else:
            parts = ["raw"] + (["nonexp"] if o.nonexpansive else [])
            parts += [f"{name}={value:g}" for name, value in
                      (("qk", o.score_bound), ("v", o.value_bound)) if value is not None]
        parts += (["norm"] if o.normalize_states else [])
        parts += [f"scale={o.score_scale:g}"] if o.score_scale != 1.0 else []
        parts += [f"cap={o.score_cap:g}"] if o.score_cap is not None else []
        return ",".join([text, *parts])


_OPTION_HELP = "'raw', 'nonexp', 'qk=B', 'v=C', 'norm', 'scale=S', 'cap=C'"


def _parse_options(parts, spec):
    """Attention options after the commas, applied in order to
    [`BOUNDED`][attnrnn.train.models.BOUNDED] (``raw`` first starts from the homework's model
    instead)."""
    options = BOUNDED
    fields = {"qk": "score_bound", "v": "value_bound", "scale": "score_scale",
              "cap": "score_cap"}
    for position, part in enumerate(parts):
        name, _, value = part.partition("=")
        try:
            if name == "raw" and not value and position == 0:
                options = RAW
            elif name == "nonexp" and not value:
                options = options._replace(nonexpansive=True)
            elif name == "norm" and not value:
                options = options._replace(normalize_states=True)
            elif name in fields and value:
                number = float(value)
                if not number > 0:
                    raise ValueError
                options = options._replace(**{fields[name]: number})
            else:
                raise ValueError
        except ValueError:
            raise ValueError(
                f"model option {part!r} in {spec!r} is not one of {_OPTION_HELP} "
                "('raw' only first; numbers > 0)"
            ) from None
    return options


def parse_model(spec) -> ModelSpec:
    """``"gated"``, ``"lstm"``, ``"gru"``, ``"conv"``, ``"attention:K"`` or ``"attention:inf"`` as a
    [`ModelSpec`][attnrnn.train.models.ModelSpec]. Attention is bounded by default
    ([`BOUNDED`][attnrnn.train.models.BOUNDED]); options after
    commas: ``raw`` (first: the homework's unbounded model), ``nonexp`` (value maps
    nonexpansive), ``qk=B`` (query/key spectral bound), ``v=C`` (input value column bound),
    ``norm`` (normalise the states entering the lag terms), ``scale=S`` (multiply scores),
    ``cap=C`` (soft cap). The gated RNN takes ``offset=B`` (its initial gate offset);
    ``lstm1997`` takes ``truncated`` (the paper's truncated gradient) and ``logistic`` (a
    logistic output unit on a regression), each at most once, in any order."""
    if isinstance(spec, ModelSpec):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"model must be a string such as 'gated', got {type(spec).__name__}")
    return _parse_model(spec)


@functools.lru_cache(maxsize=256)
def _parse_model(spec: str) -> ModelSpec:
    """The parsing itself, cached by string (a config asks for its spec often)."""
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
    elif cell == "lstm1997" and not lags and set(extra) <= {"truncated", "logistic"} and (
            len(set(extra)) == len(extra)):
        return ModelSpec(cell, truncated="truncated" in extra, logistic="logistic" in extra)
    elif cell in (*CELLS, "conv") and not lags and not extra:
        return ModelSpec(cell)
    raise ValueError(
        f"model must be 'gated', 'lstm', 'gru', 'lstm1997', 'conv', 'attention:K' (K an int "
        f">= 0) or "
        f"'attention:inf', "
        f"optionally with options {_OPTION_HELP} (attention), ',offset=B' (gated) or "
        f"',truncated' and/or ',logistic' (lstm1997), got {spec!r}"
        + (" (make_model's cell 'attention' is 'attention:K' or 'attention:inf' here)"
           if spec == "attention" else "")
    )


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


class Model(NamedTuple):
    """A sequence model built once by [`make_model`][attnrnn.train.models.make_model], its
    configuration captured:

    - ``init(key) -> params``
      ([`SequenceModelParams`][attnrnn.train.models.SequenceModelParams]);
    - ``apply(params, xs, mask=None) -> outputs`` on one sequence ``xs (T, n)``: logits (or
      the net input of ``lstm1997``'s logistic output units, or the regression value),
      ``(outputs,)`` from the last valid state (or every state: ``readout="all"``), or
      ``(T, outputs)`` from every state for a per-step task;
    - ``predict(outputs)``: what the model claims in the units of the targets;
    - ``loss(params, xs, labels, mask=None, tolerance=None) -> (loss, aux)`` on a batch
      (``_batch_loss``; no mask: every step valid);
    - ``name``: the configuration in words (``str(ModelSpec)``, then ``,bi``, ``,layers=L``,
      ``,readout=all``, ``,position`` where they apply), for records.
    """

    init: Callable
    apply: Callable
    predict: Callable
    loss: Callable
    name: str


def _with_bias_input(xs):
    """``[x, 1]`` at every step: the gated RNN's bias column (the homework's cell has none)."""
    return jnp.concatenate([xs, jnp.ones(xs.shape[:-1] + (1,), xs.dtype)], axis=-1)


def _gated_init(key, n, m, spec, regression, dtype):
    params = gated_rnn_init(key, n + 1, m, dtype=dtype)
    return params._replace(W_c=params.W_c.at[:, -1].set(spec.gate_offset))


class Cell(NamedTuple):
    """A recurrence as the models use it: ``init(key, n, m, spec, regression, dtype)`` and
    ``run(params, xs, mask, reverse, spec) -> hs (T, width)``; ``width(params)`` is the
    state size the readout sees."""

    init: Callable
    run: Callable
    width: Callable


# One entry per recurrence: adding a cell is adding a line here.
CELLS = {
    "gated": Cell(_gated_init,
                  lambda p, xs, mask, reverse, spec: gated_rnn(p, _with_bias_input(xs),
                                                               mask=mask, reverse=reverse),
                  lambda p: p.W_h.shape[0]),
    "attention": Cell(lambda key, n, m, spec, regression, dtype:
                      attention_rnn_init(key, n, m, k=spec.k, dtype=dtype),
                      lambda p, xs, mask, reverse, spec: attention_rnn(
                          p, xs, k=spec.k, mask=mask, reverse=reverse, options=spec.options),
                      lambda p: p.V_x.shape[0]),
    "lstm": Cell(lambda key, n, m, spec, regression, dtype: lstm_init(key, n, m, dtype=dtype),
                 lambda p, xs, mask, reverse, spec: lstm(p, xs, mask=mask, reverse=reverse),
                 lambda p: p.W_h.shape[1]),
    "gru": Cell(lambda key, n, m, spec, regression, dtype: gru_init(key, n, m, dtype=dtype),
                lambda p, xs, mask, reverse, spec: gru(p, xs, mask=mask, reverse=reverse),
                lambda p: p.W_h.shape[1]),
    "lstm1997": Cell(lambda key, n, m, spec, regression, dtype: lstm1997_init(
                         key, n, input_gate_bias=(-3.0, -6.0) if regression else (-2.0, -4.0),
                         dtype=dtype),
                     lambda p, xs, mask, reverse, spec: lstm1997(
                         p, xs, mask=mask, reverse=reverse, truncated=spec.truncated),
                     lambda p: p.W_c.shape[0]),
}
READOUTS = ("last", "all")

# ConvBase of the MNIST-1D benchmark (Greydanus 2020): three 1-D convolutions with ReLU,
# (kernel, stride, padding) each, then a linear classifier on the flattened features.
CONV_LAYERS = ((5, 2, 1), (3, 2, 1), (3, 2, 1))


@functools.lru_cache(maxsize=64)
def make_model(cell="gated", *, input_size, hidden_size, outputs, k=None, options=BOUNDED,
               gate_offset=GATE_OFFSET, truncated=False, logistic=False, per_step=False,
               regression=False, layers=1, bidirectional=False, readout="last", length=None,
               position=False, dtype=jnp.float32) -> Model:
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
    the paper's; its regression output unit is linear unless ``logistic`` (docs/results.md
    compares the two).

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
        [`BOUNDED`][attnrnn.train.models.BOUNDED]).
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
      a [`Model`][attnrnn.train.models.Model] — the same value for the same arguments (cached),
      so functions jitted with the model as a static argument (``evaluate``) compile once per
      configuration, not once per run.
    """
    _check_cell(cell)
    n, m, classes, layers = (as_int(name, value, minimum=1) for name, value in (
        ("input_size", input_size), ("hidden_size", hidden_size), ("outputs", outputs),
        ("layers", layers)))
    _check_architecture(cell, layers, bidirectional, readout, position, length, per_step,
                        regression)
    spec = ModelSpec(cell, k if cell == "attention" else None,
                     options if cell == "attention" else BOUNDED,
                     float(gate_offset), cell == "lstm1997" and bool(truncated),
                     cell == "lstm1997" and bool(logistic))
    name = ",".join([str(spec), *["bi"] * bool(bidirectional),
                     *[f"layers={layers}"] * (layers > 1), *["readout=all"] * (readout == "all"),
                     *["position"] * bool(position)])
    n_inputs = n + bool(position)
    if cell == "conv":
        return _conv_model(n, m, classes, as_int("length", length, minimum=1), dtype, name)
    recurrence, directions = CELLS[cell], 2 if bidirectional else 1
    plain = layers == 1 and directions == 1  # SequenceModelParams.cell is the cell's params

    def init(key):
        k_cell, k_out, k_bias = jax.random.split(key, 3)
        if plain:
            cell_params = top = recurrence.init(k_cell, n_inputs, m, spec, regression, dtype)
        else:
            keys = jax.random.split(k_cell, layers * directions).reshape(layers, directions, -1)
            cell_params = tuple(tuple(recurrence.init(keys[i, d],
                                                      n_inputs if i == 0 else m * directions,
                                                      m, spec, regression, dtype)
                                      for d in range(directions)) for i in range(layers))
            top = cell_params[-1][0]
        fan_in = recurrence.width(top) * directions * (length if readout == "all" else 1)
        return SequenceModelParams(cell_params, _readout_init(k_out, k_bias, classes, fan_in,
                                                              cell == "lstm1997", dtype))

    states = _stacked_states(recurrence, spec, plain, position)

    def apply(params, xs, mask=None):
        hs, last = states(params, xs, mask)
        features = hs if per_step else hs.reshape(-1) if readout == "all" else last
        logits = features @ params.readout.W.T
        return logits + jnp.broadcast_to(params.readout.b, logits.shape)

    def predict(outputs):
        if cell == "lstm1997" and (logistic or not regression):
            return jax.nn.sigmoid(outputs)
        return outputs if regression else jax.nn.softmax(outputs, axis=-1)

    return Model(init, apply, predict,
                 _loss(apply, predict, cell == "lstm1997", per_step, regression), name)


def _stacked_states(recurrence, spec, plain, position):
    """``states(params, xs, mask)``: the last layer's states ``(T, width)`` and its last
    valid state, through the stack of layers (``tanh`` between them; each bidirectional layer
    forward and reversed, concatenated)."""

    def states(params, xs, mask):
        stack = ((params.cell,),) if plain else params.cell
        hs = xs
        if position:
            steps = jnp.linspace(-1, 1, xs.shape[0], dtype=xs.dtype)
            hs = jnp.concatenate([xs, steps[:, None]], axis=-1)
        for i, layer in enumerate(stack):
            inputs = hs if i == 0 else jnp.tanh(hs)
            runs = [recurrence.run(p, inputs, mask, d == 1, spec) for d, p in enumerate(layer)]
            hs = runs[0] if len(runs) == 1 else jnp.concatenate(runs, axis=-1)
        last = runs[0][-1] if len(runs) == 1 else jnp.concatenate([runs[0][-1], runs[1][0]])
        return hs, last

    return states


def _check_cell(cell):
    """A cell's name; a model string (the CLI's ``attention:inf``) is refused with the way to
    build it."""
    if cell not in (*CELLS, "conv"):
        hint = (f" ({cell!r} is a model string, as the CLI's --model takes: "
                f"model_for({cell!r}, task, hidden_size) builds it)"
                if isinstance(cell, str) and ":" in cell else "")
        raise ValueError(f"cell must be one of {[*CELLS, 'conv']}, got {cell!r}{hint}")


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


def _conv_model(n, channels, classes, length, dtype, name):
    """MNIST-1D's ConvBase of ``attnrnn.conv`` (see ``make_model``)."""
    size = length
    for kernel, stride, padding in CONV_LAYERS:
        size = conv_output_shape((size,), (kernel,), stride=stride, padding=padding)[0]
    if size < 1:
        raise ValueError(f"conv needs sequences of at least 7 steps, got length {length}")

    def init(key):
        keys = jax.random.split(key, len(CONV_LAYERS) + 1)
        convs = tuple(ConvParams(*conv_init(k, n if i == 0 else channels, channels, kernel,
                                            dtype=dtype))
                      for i, (k, (kernel, _, _)) in enumerate(zip(keys, CONV_LAYERS)))
        bound = 1 / math.sqrt(channels * size)  # PyTorch's nn.Linear, as ConvBase's
        k_w, k_b = jax.random.split(keys[-1])
        return SequenceModelParams(convs, Readout(
            jax.random.uniform(k_w, (classes, channels * size), dtype, -bound, bound),
            jax.random.uniform(k_b, (classes,), dtype, -bound, bound)))

    def apply(params, xs, mask=None):
        h = xs.T  # (n, T): channels first
        for (w, b), (_, stride, padding) in zip(params.cell, CONV_LAYERS):
            h = jax.nn.relu(conv(h, w, stride=stride, padding=padding) + b[:, None])
        return params.readout.W @ h.reshape(-1) + params.readout.b

    def predict(outputs):
        return jax.nn.softmax(outputs, axis=-1)

    return Model(init, apply, predict, _loss(apply, predict, False, False, False), name)


def _loss(apply, predict, squared_error, per_step, regression):
    """A model's ``loss(params, xs, labels, mask=None, tolerance=None)``: ``_batch_loss`` with
    its configuration bound (no mask: every step valid)."""

    def loss(params, xs, labels, mask=None, tolerance=None):
        return _batch_loss(apply, predict, squared_error, per_step, regression, params, xs,
                           labels, mask, tolerance)

    return loss


def model_for(spec, task, hidden_size, dtype=jnp.float32, *, layers=1, bidirectional=False,
              readout="last", position=False) -> Model:
    """The [`Model`][attnrnn.train.models.Model] of a
    [`ModelSpec`][attnrnn.train.models.ModelSpec] (or its string) sized for ``task``."""
    spec = parse_model(spec)
    length = task.train[0].shape[1] if getattr(task, "train", None) is not None else None
    return make_model(spec.cell, input_size=task.features, hidden_size=hidden_size,
                      outputs=task.classes, k=spec.k, options=spec.options,
                      gate_offset=spec.gate_offset, truncated=spec.truncated,
                      logistic=spec.logistic, per_step=task.per_step,
                      regression=task.regression, layers=layers, bidirectional=bidirectional,
                      readout=readout, length=length, position=position, dtype=dtype)


def _batch_loss(apply, predict, squared_error, per_step, regression, params, xs, labels, mask,
                tolerance):
    """Mean loss and accuracy over a batch (over valid steps for per-step tasks), with each
    sequence's error measures for the 1997 stopping rule.

    The loss is the cross-entropy of the softmax classifiers, and the paper's squared error
    ``E = ½ Σ_j (y_j - t_j)²`` of the predictions for ``lstm1997`` (``squared_error``) and
    for every regression. A prediction is right when its class is the argmax
    (classification), or when ``|y - t| < tolerance`` (regression; default 0.04, the adding
    problem's ABS(0.04)).

    Returns:
      ``(loss, aux)``: ``aux["accuracy"]``, ``aux["errors"]`` (wrong predictions),
      ``aux["count"]`` (what they are counted over: sequences, or valid steps) and, for
      sequence tasks, per sequence ``aux["squared_error"]`` (``E``, on probabilities for a
      classifier) and ``aux["abs_error"]`` (``max_j |y_j - t_j|``).
    """
    if mask is None:  # every step valid: the recurrences run without a mask
        outputs = jax.vmap(lambda x: apply(params, x))(xs)
    else:
        outputs = jax.vmap(lambda x, m: apply(params, x, m))(xs, mask)
    y = predict(outputs)
    targets = labels[..., None] if regression else jax.nn.one_hot(labels, outputs.shape[-1],
                                                                   dtype=y.dtype)
    squared = 0.5 * jnp.sum((y - targets) ** 2, axis=-1)
    abs_error = jnp.max(jnp.abs(y - targets), axis=-1)
    if regression:
        losses, wrong = squared, abs_error >= (0.04 if tolerance is None else tolerance)
    else:
        losses = (squared if squared_error else
                  optax.softmax_cross_entropy_with_integer_labels(outputs, labels))
        wrong = jnp.argmax(outputs, axis=-1) != labels
    weights = (mask.astype(losses.dtype) if per_step and mask is not None else
               jnp.ones_like(losses))
    total = jnp.sum(weights)
    errors = jnp.sum(wrong * weights)
    aux = {"accuracy": 1 - errors / total, "errors": errors, "count": total}
    if not per_step:
        aux.update(squared_error=squared, abs_error=abs_error)
    return jnp.sum(losses * weights) / total, aux
