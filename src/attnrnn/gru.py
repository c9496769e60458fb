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

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp

from attnrnn import _scan
from attnrnn._cell_kernel import GateCell, affine, gate_kernel
from attnrnn._checks import as_int, check_gate_blocks, check_shape, initialiser

__all__ = ["GRUParams", "gru_init", "gru", "gru_cell", "gru_initial_state"]


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
        remat_chunk=None, backward="fused", return_state=False):
    """Runs the GRU over ``xs (T, n)`` from ``initial_state`` (zeros when None); returns
    ``hs (T, m)``, or ``(hs, h_last)`` with ``return_state``. ``mask``, ``reverse``,
    ``unroll``, ``remat_chunk`` and ``backward`` behave as for
    [`attnrnn.gated_rnn`][attnrnn.gated.gated_rnn], the keywords of every recurrence of the
    library (the default ``backward="fused"``: the gate cells' hand-written reverse pass,
    ``attnrnn._cell_kernel``, reverse mode only; ``"autodiff"``: JAX differentiates the loop,
    forward mode too, and under ``jax.grad`` of a vmapped loss sums the weight gradient inside
    it, the faster for large batches of small states, e.g. batch 100 of hidden 6;
    ``docs/performance.md`` compares the two)."""
    n, m = _check_params(params)
    T = _scan.check_sequence(xs, n)
    loop = _scan.check_loop(T, mask=mask, reverse=reverse, unroll=unroll,
                            remat_chunk=remat_chunk, backward=backward,
                            return_state=return_state)
    dtype, h0 = _scan.initial_state(initial_state, _scan.state_shapes((m,)), "(m,)", *params,
                                    xs)
    recurrence, W_h, inputs = _recurrence(params, dtype, fused=loop.backward == "fused")
    h_last, hs = _scan.run_recurrence(recurrence, W_h, inputs, h0, jnp.asarray(xs, dtype),
                                      **loop.run_options())
    return _scan.outputs(loop, hs, h_last)


def gru_cell(params: GRUParams, h, x):
    """One step, ``(h[t-1], x[t]) -> (h[t], h[t])``: the GRU as a cell of
    [`attnrnn.run`][attnrnn.loop.run] (``ar.run(ar.gru_cell, params, xs, initial_state=h0)``
    is ``ar.gru(params, xs, initial_state=h0)``), or of any loop of your own."""
    _, m = _check_params(params)
    check_shape("h", h, (m,), "(m,), the hidden size of params")
    dtype = jnp.result_type(*params, h, x)
    recurrence, W_h, inputs = _recurrence(params, dtype, fused=False)
    return _scan.recurrence_step(recurrence, W_h, inputs, jnp.asarray(h, dtype),
                                 jnp.asarray(x, dtype))


def _recurrence(params, dtype, fused):
    """``(Recurrence, W_h (1, 3m, m), inputs)`` of the time loop. Under autodiff ``b_hr`` and
    ``b_hz`` join the input projection and the update closes over ``b_hn`` (it sits inside
    ``r ⊙ ·``); the fused kernel takes ``b_h`` whole, ``pre = h W_hᵀ + b_h``."""
    W_x, W_h, b_x, b_h = (jnp.asarray(w, dtype) for w in params)
    if fused:
        return _KERNEL, W_h[None], ((W_x.T, b_x), b_h)
    m = W_h.shape[1]
    inputs = (W_x.T, jnp.concatenate([b_x[:2 * m] + b_h[:2 * m], b_x[2 * m:]]))
    return (_scan.Recurrence(project_inputs=_project, read=_read,
                             update=partial(_update_given_b_hn, b_h[2 * m:]),
                             project_in_loop=True), W_h[None], inputs)


def _check_params(params):
    """``(n, m)`` of checked parameters."""
    return check_gate_blocks(params, GRUParams, 3)


def _project(inputs, xs):
    """Every step's input part of each gate, one ``(T, m)`` array per gate (a gate's columns
    cut out of one ``(T, 3m)`` array inside the loop cost a copy every step): ``W_{xr} x[t] +
    b_{xr} + b_{hr}``, the same for ``z``, and ``W_{xn} x[t] + b_{xn}``."""
    W_x_T, bias = inputs[:2]
    return tuple(jnp.split(xs @ W_x_T + bias[None, :], 3, axis=-1))


def _read(h, z):
    return h[None], None


def _update_given_b_hn(b_hn, h, z, context, WP):
    x_r, x_z, x_n = z
    h_r, h_z, h_n = jnp.split(WP[0], 3)
    r, update = jax.nn.sigmoid(x_r + h_r), jax.nn.sigmoid(x_z + h_z)
    n = jnp.tanh(x_n + r * (h_n + b_hn))
    h = (1 - update) * n + update * h
    return h, h


def _kernel_step(carry, z, pre):
    """The step of the fused kernel (``attnrnn._cell_kernel``) given ``z = W_x x[t] + b_x``
    and ``pre = W_h h[t-1] + b_h``; it saves the local derivatives ``step_back`` multiplies
    by."""
    (h,) = carry
    (x_r, x_z, x_n), (p_r, p_z, p_n) = z, jnp.split(pre, 3, axis=-1)
    r, update = jax.nn.sigmoid(x_r + p_r), jax.nn.sigmoid(x_z + p_z)
    n = jnp.tanh(x_n + r * p_n)
    saved = (update, (1 - update) * (1 - n * n), (h - n) * update * (1 - update),
             p_n * r * (1 - r), r)
    return ((1 - update) * n + update * h,), saved


def _kernel_step_back(saved, delta):
    """``∂ℓ/∂h[t-1]`` (but for ``W_h``), ``∂ℓ/∂pre`` and ``∂ℓ/∂z`` from ``δ = ∂ℓ/∂h[t]``:
    with ``n̂``, ``ẑ``, ``r̂`` the gates' pre-activations, ``∂ℓ/∂n̂ = δ (1 - z)(1 - n²)``,
    ``∂ℓ/∂ẑ = δ (h[t-1] - n) z (1 - z)``, ``∂ℓ/∂r̂ = ∂ℓ/∂n̂ · p_n r (1 - r)``; ``pre``'s n
    block gets ``∂ℓ/∂n̂ · r``."""
    update, a_n, a_z, a_r, r = saved
    (d,) = delta
    d_n = d * a_n
    d_r, d_z = d_n * a_r, d * a_z
    return ((d * update,), jnp.concatenate([d_r, d_z, d_n * r], axis=-1),
            jnp.concatenate([d_r, d_z, d_n], axis=-1))


# backward="fused": the kernel is the whole loop (the loop reads nothing else of it).
_KERNEL = _scan.Recurrence(project_inputs=_project, read=None, update=None, kernel=gate_kernel(
    GateCell(project=affine, step=_kernel_step, step_back=_kernel_step_back)))
