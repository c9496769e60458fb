r"""A standard LSTM, the baseline users expect next to the gated RNN (not part of the homework).

With gates stacked as ``[i, f, g, o]``:

$$
\begin{aligned}
[i; f; g; o] &= [\sigma; \sigma; \tanh; \sigma]\big(W_x\, x[t] + W_h\, h[t-1] + b\big), \\
c[t] &= f \odot c[t-1] + i \odot g, \qquad h[t] = o \odot \tanh(c[t]).
\end{aligned}
$$
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from attnrnn import _scan
from attnrnn._checks import (as_bool, as_int, check_floating, check_mask, check_rank,
                             check_shape, initialiser)

__all__ = ["LSTMParams", "lstm_init", "lstm"]


class LSTMParams(NamedTuple):
    """``W_x (4m, n)``, ``W_h (4m, m)``, ``b (4m,)``; gate blocks in the order i, f, g, o."""

    W_x: jax.Array
    W_h: jax.Array
    b: jax.Array


@initialiser
def lstm_init(key, input_size, hidden_size, *, dtype=jnp.float32) -> LSTMParams:
    """PyTorch's ``nn.LSTM`` initialisation (``U(±1/√m)``), plus a forget-gate bias of 1 so
    the cell starts by remembering (Jozefowicz et al., 2015)."""
    n = as_int("input_size", input_size, minimum=1)
    m = as_int("hidden_size", hidden_size, minimum=1)
    bound = 1 / jnp.sqrt(m)
    k_x, k_h, k_b = jax.random.split(key, 3)
    b = jax.random.uniform(k_b, (4 * m,), dtype, -bound, bound).at[m : 2 * m].add(1.0)
    return LSTMParams(
        jax.random.uniform(k_x, (4 * m, n), dtype, -bound, bound),
        jax.random.uniform(k_h, (4 * m, m), dtype, -bound, bound),
        b,
    )


def lstm(params: LSTMParams, xs, *, mask=None, reverse=False, unroll=1):
    """Runs the LSTM from zero state over ``xs (T, n)``; returns ``hs (T, m)``. ``mask``,
    ``reverse`` and ``unroll`` behave as for [`attnrnn.gated_rnn`][attnrnn.gated.gated_rnn]."""
    four_m, n = check_rank("params.W_x", params.W_x, 2, "(4m, n)")
    m = four_m // 4
    check_shape("params.W_h", params.W_h, (4 * m, m), "(4m, m)")
    check_shape("params.b", params.b, (4 * m,), "(4m,)")
    T = check_rank("xs", xs, 2, "(T, n)")[0]
    check_shape("xs", xs, (T, n), "(T, n), n the input_size of params")
    check_floating("xs", xs)
    mask = check_mask(mask, T)
    reverse = as_bool("reverse", reverse)
    dtype = jnp.result_type(*params, xs)
    W_x, W_h, b = (jnp.asarray(w, dtype) for w in params)

    recurrence = _scan.Recurrence(
        project_inputs=lambda inputs, xs: xs @ inputs[0].T + inputs[1][None, :],
        read=lambda carry, z: (carry[0][None], None), update=_update,
        skip_output=lambda carry: carry[0])
    zero = jnp.zeros((m,), dtype)
    _, hs = _scan.run(recurrence, W_h[None], (W_x, b), (zero, zero), jnp.asarray(xs, dtype),
                      mask=mask, reverse=reverse, unroll=_scan.check_unroll(unroll))
    return hs


def _update(carry, z, context, WP):
    """One step given ``W_h h[t-1] = WP[0]``."""
    _, c = carry
    i, f, g, o = jnp.split(z + WP[0], 4)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    h = jax.nn.sigmoid(o) * jnp.tanh(c)
    return (h, c), h
