r"""A GRU, PyTorch's equations: the baseline users know (not part of the homework).

With gates stacked as ``[r, z, n]``:

$$
\begin{aligned}
r[t] &= \sigma(W_{xr}\, x[t] + b_{xr} + W_{hr}\, h[t-1] + b_{hr}), \\
z[t] &= \sigma(W_{xz}\, x[t] + b_{xz} + W_{hz}\, h[t-1] + b_{hz}), \\
n[t] &= \tanh\big(W_{xn}\, x[t] + b_{xn} + r[t] \odot (W_{hn}\, h[t-1] + b_{hn})\big), \\
h[t] &= (1 - z[t]) \odot n[t] + z[t] \odot h[t-1].
\end{aligned}
$$

Flax's ``GRUCell`` is the same cell with ``b_hr = b_hz = 0`` (its input projections carry
those biases).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from attnrnn import _scan
from attnrnn._checks import as_int, check_gate_blocks, initialiser

__all__ = ["GRUParams", "gru_init", "gru", "gru_initial_state"]


class GRUParams(NamedTuple):
    """``W_x (3m, n)``, ``W_h (3m, m)``, ``b_x (3m,)``, ``b_h (3m,)``; gate blocks in the
    order r, z, n (PyTorch's ``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh``)."""

    W_x: jax.Array
    W_h: jax.Array
    b_x: jax.Array
    b_h: jax.Array


@initialiser
def gru_init(key, input_size, hidden_size, *, dtype=jnp.float32) -> GRUParams:
    """PyTorch's ``nn.GRU`` initialisation: every weight and bias ``U(±1/√m)``."""
    n = as_int("input_size", input_size, minimum=1)
    m = as_int("hidden_size", hidden_size, minimum=1)
    bound = 1 / jnp.sqrt(m)
    shapes = ((3 * m, n), (3 * m, m), (3 * m,), (3 * m,))
    return GRUParams(*(jax.random.uniform(k, shape, dtype, -bound, bound)
                       for k, shape in zip(jax.random.split(key, 4), shapes)))


def gru_initial_state(params: GRUParams, dtype=None):
    """The zero state ``h[0] (m,)``."""
    _, m = _check_params(params)
    return jnp.zeros((m,), dtype or jnp.result_type(*params))


def gru(params: GRUParams, xs, *, initial_state=None, mask=None, reverse=False, unroll=1,
        remat_chunk=None, backward="autodiff", return_state=False):
    """Runs the GRU over ``xs (T, n)`` from ``initial_state`` (zeros when None); returns
    ``hs (T, m)``, or ``(hs, h_last)`` with ``return_state``. ``mask``, ``reverse``,
    ``unroll``, ``remat_chunk`` and ``backward`` behave as for
    [`attnrnn.gated_rnn`][attnrnn.gated.gated_rnn], the keywords of every recurrence of the
    library (``backward="fused"``: the time loop's weight-tapped reverse pass; the default
    ``"autodiff"``: ``docs/performance.md`` compares the two)."""
    n, m = _check_params(params)
    T = _scan.check_sequence(xs, n)
    loop = _scan.check_loop(T, mask=mask, reverse=reverse, unroll=unroll,
                            remat_chunk=remat_chunk, backward=backward,
                            return_state=return_state)
    dtype, h0 = _scan.initial_state(initial_state, _scan.state_shapes((m,)), "(m,)", *params,
                                    xs)
    W_x, W_h, b_x, b_h = (jnp.asarray(w, dtype) for w in params)
    recurrence = _scan.Recurrence(project_inputs=_project, read=lambda h, z: (h[None], None),
                                  update=_update)
    h_last, hs = _scan.run(recurrence, W_h[None], (W_x, b_x, b_h), h0, jnp.asarray(xs, dtype),
                           **loop.run_options())
    return _scan.outputs(loop, hs, h_last)


def _check_params(params):
    """``(n, m)`` of checked parameters."""
    return check_gate_blocks(params, GRUParams, 3)


def _project(inputs, xs):
    """Every step's ``W_x x[t] + b_x``, and ``b_h`` beside it (``b_hn`` sits inside
    ``r ⊙ ·``, so it cannot join the input projection)."""
    W_x, b_x, b_h = inputs
    return xs @ W_x.T + b_x[None, :], jnp.broadcast_to(b_h, (xs.shape[0], b_h.shape[0]))


def _update(h, z, context, WP):
    """One step given ``W_h h[t-1] = WP[0]``."""
    x_r, x_z, x_n = jnp.split(z[0], 3)
    h_r, h_z, h_n = jnp.split(WP[0] + z[1], 3)
    r, update = jax.nn.sigmoid(x_r + h_r), jax.nn.sigmoid(x_z + h_z)
    n = jnp.tanh(x_n + r * h_n)
    h = (1 - update) * n + update * h
    return h, h
