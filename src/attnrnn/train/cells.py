"""The recurrences a model can be built on, one entry each: a model string names one
([`attnrnn.train.model_spec`][attnrnn.train.model_spec]), and a
[`Model`][attnrnn.train.models.Model] initialises and runs it through its entry. Adding a
recurrence is adding an entry here. This module reads the library only (the spec is passed
in), so the model strings and the models can both read it."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax.numpy as jnp

from attnrnn.attention import attention_rnn, attention_rnn_init
from attnrnn.gated import gated_rnn, gated_rnn_init
from attnrnn.gru import gru, gru_init
from attnrnn.lstm import lstm, lstm_init
from attnrnn.lstm1997 import lstm1997, lstm1997_init

__all__ = ["Cell", "CELLS"]


def _with_bias_input(xs):
    """``[x, 1]`` at every step: the gated RNN's bias column (the equations' cell has none)."""
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


# The GRU's and LSTM's results in docs/ were trained with autodiff through the time loop; the
# library's default is now their fused reverse pass (the same gradients to rounding, which a
# training run can carry into other numbers), so the application keeps the backward pass its
# recorded results were measured with. At MNIST-1D's size (hidden 6) it is also the faster.
RECORDED_BACKWARD = "autodiff"

# One entry per recurrence (model strings, make_model and the CLI read their names from it).
CELLS = {
    "gated": Cell(_gated_init,
                  lambda p, xs, mask, reverse, spec: gated_rnn(p, _with_bias_input(xs),
                                                               mask=mask, reverse=reverse),
                  lambda p: p.W_h.shape[0]),
    "attention": Cell(lambda key, n, m, spec, regression, dtype:
                      attention_rnn_init(key, n + spec.bias, m, k=spec.k, dtype=dtype),
                      lambda p, xs, mask, reverse, spec: attention_rnn(
                          p, _with_bias_input(xs) if spec.bias else xs, k=spec.k, mask=mask,
                          reverse=reverse, options=spec.options),
                      lambda p: p.V_x.shape[0]),
    "lstm": Cell(lambda key, n, m, spec, regression, dtype: lstm_init(key, n, m, dtype=dtype),
                 lambda p, xs, mask, reverse, spec: lstm(p, xs, mask=mask, reverse=reverse,
                                                         backward=RECORDED_BACKWARD),
                 lambda p: p.W_h.shape[1]),
    "gru": Cell(lambda key, n, m, spec, regression, dtype: gru_init(key, n, m, dtype=dtype),
                lambda p, xs, mask, reverse, spec: gru(p, xs, mask=mask, reverse=reverse,
                                                       backward=RECORDED_BACKWARD),
                lambda p: p.W_h.shape[1]),
    "lstm1997": Cell(lambda key, n, m, spec, regression, dtype: lstm1997_init(
                         key, n, input_gate_bias=(-3.0, -6.0) if regression else (-2.0, -4.0),
                         dtype=dtype),
                     lambda p, xs, mask, reverse, spec: lstm1997(
                         p, xs, mask=mask, reverse=reverse, truncated=spec.truncated),
                     lambda p: p.W_c.shape[0]),
}
