"""The cells a model can be built on, one entry each: a small frozen value of the cell's own
options — [`Gated(offset)`][attnrnn.train.cells.Gated],
[`Attention(k, options, bias)`][attnrnn.train.cells.Attention],
[`LSTM()`][attnrnn.train.cells.LSTM], [`GRU()`][attnrnn.train.cells.GRU],
[`LSTM1997(truncated, logistic)`][attnrnn.train.cells.LSTM1997] and the convolutional
classifier [`Conv()`][attnrnn.train.cells.Conv] — that owns their parsing (``parse``) and
formatting (``str``) in model strings, the cell's parameters (``init``) and run (``run``), and
where the cell differs from the rest, its readout, outputs, loss and the architectures it
refuses. A [`Model`][attnrnn.train.models.Model] holds one as its ``spec``; adding a cell is
adding an entry here (and to ``CELLS``). This module reads the library only, so the model
strings and the models can both read it."""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import ClassVar

import jax
import jax.numpy as jnp

from attnrnn._checks import as_bool, as_int
from attnrnn.attention import attention_rnn, attention_rnn_init, has_fused_kernel
from attnrnn.bounds import RAW, AttentionOptions, _check_options, check_heads
from attnrnn.conv import ConvParams, conv, conv_init, conv_output_shape
from attnrnn.gated import gated_rnn, gated_rnn_init
from attnrnn.gru import gru, gru_init
from attnrnn.lstm import lstm, lstm_init
from attnrnn.lstm1997 import lstm1997, lstm1997_init

__all__ = ["Attention", "BOUNDED", "CELLS", "Conv", "GATE_OFFSET", "GRU", "Gated", "LSTM",
           "LSTM1997", "ModelSpec", "log_rates"]

# The gated RNN's gate bias starts at 2 (σ(2) = 0.88): the state is kept from the first
# update, so a distant symbol survives until training can use it (0 learns far slower).
GATE_OFFSET = 2.0

# AttentionRNN's training default: the bounds of AttentionOptions that made it learn
# (docs/results.md); `attention:K,raw` is the model of the equations, unbounded.
BOUNDED = AttentionOptions(nonexpansive=True, score_bound=0.7, value_bound=2.0)

# The GRU's and LSTM's results in docs/ were trained with autodiff through the time loop; the
# library's default is now their fused reverse pass (the same gradients to rounding, which a
# training run can carry into other numbers), so the application keeps the backward pass its
# recorded results were measured with. At MNIST-1D's size (hidden 6) it is also the faster.
RECORDED_BACKWARD = "autodiff"


def _number(value: float) -> str:
    """Short when that is exact (``0.7``), else every digit: the string parses back equal."""
    short = f"{value:g}"
    return short if float(short) == value else repr(float(value))


def _with_bias_input(xs):
    """``[x, 1]`` at every step: a bias column in every input map."""
    return jnp.concatenate([xs, jnp.ones(xs.shape[:-1] + (1,), xs.dtype)], axis=-1)


class ModelSpec:
    """A model's cell and the cell's options: one subclass per entry, a frozen dataclass
    (equal and hashable by value and class). ``name`` is the cell's name in model strings,
    ``OPTIONS`` its options as ``--help`` and the errors show them. What every entry shares
    is written here once; an entry overrides what differs for its cell."""

    name: ClassVar[str]
    OPTIONS: ClassVar[str] = ""
    recurrent: ClassVar[bool] = True  # False: the model is the cell (conv)
    reads_position: ClassVar[bool] = True  # whether ``position`` may add an input
    FIXED: ClassVar[str] = ""  # why a hidden size cannot change the network, if it cannot
    squared_error: ClassVar[bool] = False  # the loss (else cross-entropy)

    @classmethod
    def parse(cls, lags: str, options: list) -> ModelSpec | None:
        """The entry a model string's ``name:lags,option,…`` says, or None when this entry
        has no such lags or options (a named option's own error is raised here)."""
        return None if lags or options else cls()

    def __str__(self):
        return self.name

    def check(self, *, per_step, regression, layers, bidirectional, readout, length,
              position):
        """Refuse what this cell cannot be built with, in one line each."""
        if position and not self.reads_position:
            raise ValueError(f"position is an input of the recurrences, not of {self.name}")

    def check_hidden(self, hidden_size):
        """Refuse a hidden size this cell's options do not fit (the config checks it early)."""

    def init(self, key, n, m, regression, dtype):
        """The cell's parameters: ``n`` inputs, ``m`` the hidden size."""
        raise NotImplementedError

    def run(self, params, xs, mask, reverse):
        """The cell's states ``(T, width)`` over ``xs (T, n)``."""
        raise NotImplementedError

    def width(self, params) -> int:
        """The state size the readout sees."""
        return params.W_h.shape[1]

    def readout_init(self, k_out, k_bias, outputs, fan_in, dtype):
        """``(W, b)``: ``N(0, 0.01 / fan_in)`` and zero biases (a fresh classifier's loss
        close to ``ln(classes)``)."""
        W = (0.1 * jax.random.normal(k_out, (outputs, fan_in), dtype)
             / jnp.sqrt(fan_in).astype(dtype))
        return W, jnp.zeros((outputs,), dtype)

    def predict(self, outputs, regression):
        """What the model claims, in the targets' units: the regression value, else the
        softmax of the logits."""
        return outputs if regression else jax.nn.softmax(outputs, axis=-1)


@dataclasses.dataclass(frozen=True)
class Gated(ModelSpec):
    """The gated RNN ([`attnrnn.gated_rnn`][attnrnn.gated.gated_rnn]) reading ``[x, 1]``: the
    constant feature gives each of its matrices a bias column (without one its gate cannot
    start closed on real-valued inputs, such as the adding problem's); the gate's bias column
    starts at ``offset`` — for one-hot inputs exactly an offset added to every entry of
    ``W_c``. Model strings: ``gated``, ``gated,offset=B``."""

    offset: float = GATE_OFFSET
    name: ClassVar[str] = "gated"
    OPTIONS: ClassVar[str] = "offset=B"

    def __post_init__(self):
        if isinstance(self.offset, bool) or not isinstance(self.offset, numbers.Real):
            raise TypeError(f"offset must be a number, got {self.offset!r}")
        if not math.isfinite(self.offset):
            raise ValueError(f"offset must be a finite number, got {self.offset!r}")
        object.__setattr__(self, "offset", float(self.offset))

    @classmethod
    def parse(cls, lags, options):
        if lags or len(options) > 1:
            return None
        name, _, value = (options or [f"offset={GATE_OFFSET}"])[0].partition("=")
        try:
            offset = float(value)
        except ValueError:
            return None
        return cls(offset) if name == "offset" else None

    def __str__(self):
        return "gated" if self.offset == GATE_OFFSET else f"gated,offset={_number(self.offset)}"

    def init(self, key, n, m, regression, dtype):
        params = gated_rnn_init(key, n + 1, m, dtype=dtype)
        return params._replace(W_c=params.W_c.at[:, -1].set(self.offset))

    def run(self, params, xs, mask, reverse):
        return gated_rnn(params, _with_bias_input(xs), mask=mask, reverse=reverse)

    def width(self, params):
        return params.W_h.shape[0]


# attention's numeric options and the AttentionOptions field each sets
_NUMBERS = {"qk": "score_bound", "v": "value_bound", "scale": "score_scale", "cap": "score_cap"}


@dataclasses.dataclass(frozen=True)
class Attention(ModelSpec):
    """AttentionRNN(k) ([`attnrnn.attention_rnn`][attnrnn.attention.attention_rnn]), ``k``
    lags, or AttentionRNN(∞) (``k=None``), with ``options``
    ([`AttentionOptions`][attnrnn.bounds.AttentionOptions], default
    [`BOUNDED`][attnrnn.train.cells.BOUNDED]); ``bias``: the cell reads ``[x, 1]`` (each input
    map gains a bias column; with one feature per step, ``Q_x x`` and ``K_x x`` are otherwise
    both multiples of ``x``, so the input's score cannot tell ``x`` from ``-x``).

    Model strings: ``attention:K`` (``K`` an int ≥ 0) or ``attention:inf``, then the options
    ``raw`` (first: start from the unbounded model of the equations), ``nonexp``, ``qk=B``,
    ``v=C``, ``norm``, ``scale=S``, ``cap=C``, ``heads=H``, ``recency=RATE/RATE/…`` (one rate
    per head) or ``recency=log/LOW/HIGH`` ([`log_rates`][attnrnn.train.cells.log_rates]: 0,
    then ``H - 1`` rates log-spaced from ``LOW`` to ``HIGH``; after ``heads=H``) and ``bias``,
    applied in order to ``BOUNDED``. AttentionRNN(∞)'s strings always
    write its bounds out (``attention:inf`` named alone is the training default's recipe,
    [`DEFAULTS`][attnrnn.train.config.DEFAULTS])."""

    k: int | None = None
    options: AttentionOptions = BOUNDED
    bias: bool = False
    name: ClassVar[str] = "attention"
    OPTIONS: ClassVar[str] = ("raw (first), nonexp, qk=B, v=C, norm, scale=S, cap=C, heads=H, "
                              "recency=R1/R2/.. (one rate >= 0 per head) or "
                              "recency=log/LOW/HIGH (0, then H-1 rates log-spaced from LOW to "
                              "HIGH), bias")

    def __post_init__(self):
        if self.k is not None:
            object.__setattr__(self, "k", as_int("k", self.k, minimum=0))
        if self.options is None:  # the library's None (the homework's model) is RAW here
            raise TypeError("options must be AttentionOptions (RAW for the homework's model, "
                            "BOUNDED the default), got None")
        object.__setattr__(self, "options", _check_options(self.options))
        object.__setattr__(self, "bias", as_bool("bias", self.bias))

    @classmethod
    def parse(cls, lags, options):
        text = ",".join([f"attention:{lags}", *options])
        if options.count("bias") > 1:
            raise ValueError(f"model option 'bias' comes at most once, got {text!r}")
        parsed = _parse_options([part for part in options if part != "bias"], text)
        if lags in ("inf", "∞"):
            return cls(None, parsed, "bias" in options)
        return cls(int(lags), parsed, "bias" in options) if lags.isdigit() else None

    def __str__(self):
        head = f"attention:{'inf' if self.k is None else self.k}"
        options = _format_options(self.options, explicit=self.k is None)
        return ",".join([head, *options, *["bias"] * self.bias])

    def check_hidden(self, hidden_size):
        # the heads split the state (and the keys, of the state's size)
        check_heads(self.options, hidden_size, hidden_size)

    def init(self, key, n, m, regression, dtype):
        return attention_rnn_init(key, n + self.bias, m, k=self.k, dtype=dtype)

    def run(self, params, xs, mask, reverse):
        # The hand-written reverse pass where the library has one (one channel a head, capped
        # scores: the default's shape), much the faster there (experiments/realdata/LOG.md).
        backward = ("fused" if has_fused_kernel(params, k=self.k, options=self.options)
                    else "autodiff")
        return attention_rnn(params, _with_bias_input(xs) if self.bias else xs, k=self.k,
                             mask=mask, reverse=reverse, options=self.options,
                             backward=backward)

    def width(self, params):
        return params.V_x.shape[0]


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
    if o.recency is not None:
        # up to four rates written out (as strings made before log/ had them), more as log/
        low, high = o.recency[1 % o.heads], o.recency[-1]
        log = o.heads > 4 and 0 < low <= high and o.recency == log_rates(o.heads, low, high)
        rates = map(_number, (low, high) if log else o.recency)
        parts.append("recency=" + "/".join(["log"] * log + list(rates)))
    return parts


def log_rates(heads, low, high) -> tuple:
    """``recency=log/LOW/HIGH``: head 1 never forgets (rate 0) and the other ``heads - 1``
    forget at rates evenly spaced in log from ``low`` to ``high`` — the timescales ``1/λ`` of
    the heads spread from ``1/high`` to ``1/low`` steps and beyond, as state-space models
    spread theirs. One head per state channel (``heads`` the hidden size) is the training
    default's recipe."""
    if not (0 < low <= high and math.isfinite(high)):
        raise ValueError(f"recency=log/LOW/HIGH needs 0 < LOW <= HIGH, finite; got {low}, {high}")
    steps = max(heads - 2, 1)
    rates = [low * (high / low) ** (i / steps) for i in range(heads - 1)]
    return (0.0, *rates[:-1], high) if heads > 2 else (0.0, *rates)  # HIGH as written


def _parse_options(parts, text):
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
                if not (number > 0 and math.isfinite(number)):
                    raise ValueError
                options = options._replace(**{_NUMBERS[name]: number})
            elif name == "heads" and value.isdigit() and int(value) >= 1:
                options = options._replace(heads=int(value))
            elif name == "recency" and value.startswith("log/"):
                low_high = [float(r) for r in value.split("/")[1:]]
                if len(low_high) != 2:
                    raise ValueError
                options = options._replace(recency=log_rates(options.heads, *low_high))
            elif name == "recency" and value:
                rates = tuple(float(r) for r in value.split("/"))
                if not all(math.isfinite(r) and r >= 0 for r in rates):
                    raise ValueError
                options = options._replace(recency=rates)
            else:
                raise ValueError
        except ValueError:
            raise ValueError(f"model option {part!r} in {text!r} is not one of "
                             f"{Attention.OPTIONS} (numbers finite and > 0)") from None
    if options.recency is not None and len(options.recency) != options.heads:
        raise ValueError(
            f"recency in {text!r} has {len(options.recency)} rates for {options.heads} "
            f"head{'s' * (options.heads > 1)}: give one rate per head (heads=H before it)")
    return options


class _Baseline(ModelSpec):
    """A modern gate cell of the library, without options: ``library = (run, init)``; run
    with the backward pass its recorded results were measured with."""

    library: ClassVar[tuple]

    def init(self, key, n, m, regression, dtype):
        return self.library[1](key, n, m, dtype=dtype)

    def run(self, params, xs, mask, reverse):
        return self.library[0](params, xs, mask=mask, reverse=reverse,
                               backward=RECORDED_BACKWARD)


@dataclasses.dataclass(frozen=True)
class LSTM(_Baseline):
    """The LSTM with a forget gate ([`attnrnn.lstm`][attnrnn.lstm.lstm]), a modern baseline.
    Model string: ``lstm``."""

    name: ClassVar[str] = "lstm"
    library: ClassVar[tuple] = (lstm, lstm_init)


@dataclasses.dataclass(frozen=True)
class GRU(_Baseline):
    """PyTorch's GRU ([`attnrnn.gru`][attnrnn.gru.gru]). Model string: ``gru``."""

    name: ClassVar[str] = "gru"
    library: ClassVar[tuple] = (gru, gru_init)


@dataclasses.dataclass(frozen=True)
class LSTM1997(ModelSpec):
    """The 1997 paper's whole network ([`attnrnn.lstm1997`][attnrnn.lstm1997.lstm1997]): 2
    blocks of 2 cells (the hidden size does not change it), input-gate biases -2, -4 for a
    classifier and -3, -6 for a regression (the adding problem), an output layer starting at
    ``U[-0.1, 0.1]`` like the rest, trained on the squared error. Its classifier's output units
    are logistic, as the paper's; its regression output unit is linear unless ``logistic``.
    ``truncated``: the paper's truncated gradient. Model strings: ``lstm1997`` with the options
    ``truncated`` and ``logistic``, each at most once, in any order."""

    truncated: bool = False
    logistic: bool = False
    name: ClassVar[str] = "lstm1997"
    reads_position: ClassVar[bool] = False  # the paper's inputs only
    OPTIONS: ClassVar[str] = "truncated, logistic"
    FIXED: ClassVar[str] = "the paper's network is fixed (2 blocks of 2 cells)"
    squared_error: ClassVar[bool] = True

    def __post_init__(self):
        for name in ("truncated", "logistic"):
            object.__setattr__(self, name, as_bool(name, getattr(self, name)))

    @classmethod
    def parse(cls, lags, options):
        if lags or not set(options) <= {"truncated", "logistic"} or (
                len(set(options)) != len(options)):
            return None
        return cls("truncated" in options, "logistic" in options)

    def __str__(self):
        return ",".join(["lstm1997"] + ["truncated"] * self.truncated
                        + ["logistic"] * self.logistic)

    def check(self, *, layers, bidirectional, readout, **architecture):
        if layers > 1 or bidirectional or readout != "last":
            raise ValueError("lstm1997 is the paper's whole network: one layer, forward, read "
                             "out at the end")
        super().check(layers=layers, bidirectional=bidirectional, readout=readout,
                      **architecture)

    def init(self, key, n, m, regression, dtype):
        return lstm1997_init(key, n, input_gate_bias=(-3.0, -6.0) if regression else (-2.0, -4.0),
                             dtype=dtype)

    def run(self, params, xs, mask, reverse):
        return lstm1997(params, xs, mask=mask, reverse=reverse, truncated=self.truncated)

    def width(self, params):
        return params.W_c.shape[0]

    def readout_init(self, k_out, k_bias, outputs, fan_in, dtype):
        return (jax.random.uniform(k_out, (outputs, fan_in), dtype, -0.1, 0.1),
                jax.random.uniform(k_bias, (outputs,), dtype, -0.1, 0.1))

    def predict(self, outputs, regression):
        if self.logistic or not regression:
            return jax.nn.sigmoid(outputs)
        return outputs


# ConvBase of the MNIST-1D benchmark (Greydanus 2020): three 1-D convolutions with ReLU,
# (kernel, stride, padding) each, then a linear classifier on the flattened features.
CONV_LAYERS = ((5, 2, 1), (3, 2, 1), (3, 2, 1))


@dataclasses.dataclass(frozen=True)
class Conv(ModelSpec):
    """MNIST-1D's ConvBase made of [`attnrnn.conv`][attnrnn.conv.conv]: three 1-D convolutions
    of ``hidden_size`` channels (kernels 5, 3, 3, stride 2, padding 1, ReLU) over the
    sequence's ``length`` steps, then the readout on every feature (a sequence classifier;
    the mask is not read, so sequences must be whole). Model string: ``conv``."""

    name: ClassVar[str] = "conv"
    recurrent: ClassVar[bool] = False
    reads_position: ClassVar[bool] = False

    def check(self, *, per_step, regression, layers, bidirectional, readout, length,
              **architecture):
        super().check(per_step=per_step, regression=regression, layers=layers,
                      bidirectional=bidirectional, readout=readout, length=length,
                      **architecture)
        if layers > 1 or bidirectional or readout != "last":
            raise ValueError("conv is MNIST-1D's ConvBase, read out on every feature: layers, "
                             "bidirectional and readout are for the recurrences")
        if length is None:
            raise ValueError("conv needs sequences of one length (a task made from arrays)")
        if per_step or regression:
            raise ValueError("conv is a sequence classifier; per-step and regression tasks need "
                             "a recurrence")
        self.features(as_int("length", length, minimum=1))

    @staticmethod
    def features(length) -> int:
        """Steps left after ConvBase's three convolutions of a ``length``-step sequence."""
        if length < 3:  # the first kernel (5) must fit the padded sequence (length + 2)
            raise ValueError(f"conv needs sequences of at least 3 steps, got length {length}")
        size = length
        for kernel, stride, padding in CONV_LAYERS:
            size = conv_output_shape((size,), (kernel,), stride=stride, padding=padding)[0]
        return size

    def init_network(self, key, n, channels, outputs, length, dtype):
        """``(convs, (W, b))``: the convolutions, and the readout as PyTorch's ``nn.Linear``
        starts it (ConvBase's)."""
        features = channels * self.features(length)
        keys = jax.random.split(key, len(CONV_LAYERS) + 1)
        convs = tuple(ConvParams(*conv_init(k, n if i == 0 else channels, channels, kernel,
                                            dtype=dtype))
                      for i, (k, (kernel, _, _)) in enumerate(zip(keys, CONV_LAYERS)))
        bound = 1 / math.sqrt(features)
        k_w, k_b = jax.random.split(keys[-1])
        return convs, (jax.random.uniform(k_w, (outputs, features), dtype, -bound, bound),
                       jax.random.uniform(k_b, (outputs,), dtype, -bound, bound))

    def apply_network(self, convs, readout, xs):
        h = xs.T  # (n, T): channels first
        for (w, b), (_, stride, padding) in zip(convs, CONV_LAYERS):
            h = jax.nn.relu(conv(h, w, stride=stride, padding=padding) + b[:, None])
        return readout.W @ h.reshape(-1) + readout.b


# Every entry by its name in model strings (the CLI, --help and the errors list them in this
# order).
CELLS = {entry.name: entry for entry in (Attention, Gated, LSTM, GRU, LSTM1997, Conv)}
