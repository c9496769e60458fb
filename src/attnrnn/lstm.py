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
from attnrnn._cell_kernel import GateCell, affine, gate_kernel
from attnrnn._checks import as_int, check_gate_blocks, check_shape, initialiser

__all__ = ["LSTMParams", "lstm_init", "lstm", "lstm_cell", "lstm_initial_state"]


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


def lstm(params: LSTMParams, xs, *, initial_state=None, mask=None, reverse=False, unroll=1,
         remat_chunk=None, backward="fused", return_state=False):
    """Runs the LSTM over ``xs (T, n)`` from ``initial_state``, the pair ``(h, c)`` of
    ``(m,)`` vectors (default [`lstm_initial_state`][attnrnn.lstm.lstm_initial_state], zeros);
    returns ``hs (T, m)``, or ``(hs, (h, c))`` with ``return_state``. ``mask``, ``reverse``,
    ``unroll``, ``remat_chunk`` and ``backward`` behave as for
    [`attnrnn.gated_rnn`][attnrnn.gated.gated_rnn], the keywords of every recurrence of the
    library (a skipped step carries ``(h, c)`` and repeats ``h``; the default
    ``backward="fused"`` is the gate cells' hand-written reverse pass,
    ``attnrnn._cell_kernel``, reverse mode only; ``"autodiff"`` lets JAX differentiate the
    loop, forward mode too)."""
    n, m = _check_params(params)
    T = _scan.check_sequence(xs, n)
    loop = _scan.check_loop(T, mask=mask, reverse=reverse, unroll=unroll,
                            remat_chunk=remat_chunk, backward=backward,
                            return_state=return_state)
    dtype, init = _scan.initial_state(initial_state, _scan.state_shapes((m,), (m,)),
                                      "(h, c), two (m,) vectors", *params, xs)
    W_h, inputs = _weights(params, dtype)
    if loop.backward == "fused":  # the kernel takes (projection inputs, recurrent bias)
        recurrence, inputs = _KERNEL, (inputs, None)
    else:
        recurrence = _RECURRENCE
    final, hs = _scan.run_recurrence(recurrence, W_h, inputs, init, jnp.asarray(xs, dtype),
                                     **loop.run_options())
    return _scan.outputs(loop, hs, final)


def lstm_cell(params: LSTMParams, carry, x):
    """One step, ``((h, c), x[t]) -> ((h, c), h)``: the LSTM as a cell of
    [`attnrnn.run`][attnrnn.loop.run] (its ``skip_output`` repeats ``h``), or of any loop of
    your own."""
    _, m = _check_params(params)
    for i, part in enumerate(carry):
        check_shape(f"carry[{i}]", part, (m,), "(h, c), two (m,) vectors")
    dtype = jnp.result_type(*params, *carry, x)
    return _scan.recurrence_step(_RECURRENCE, *_weights(params, dtype),
                                 tuple(jnp.asarray(a, dtype) for a in carry),
                                 jnp.asarray(x, dtype))


lstm_cell.skip_output = lambda carry: carry[0]


def _weights(params, dtype):
    """``(W_h (1, 4m, m), inputs)`` of the time loop."""
    W_x, W_h, b = (jnp.asarray(w, dtype) for w in params)
    return W_h[None], (W_x.T, b)


def lstm_initial_state(params: LSTMParams, dtype=None):
    """The zero state ``(h, c)``, two ``(m,)`` vectors."""
    _, m = _check_params(params)
    zero = jnp.zeros((m,), dtype or jnp.result_type(*params))
    return zero, zero


def _check_params(params):
    """``(n, m)`` of checked parameters."""
    return check_gate_blocks(params, LSTMParams, 4)


def _project(inputs, xs):
    """Every step's ``W_x x[t] + b``, one ``(T, m)`` array per gate: a gate's columns cut out
    of one ``(T, 4m)`` array inside the loop cost a copy every step."""
    W_x_T, b = inputs
    return tuple(jnp.split(xs @ W_x_T + b[None, :], 4, axis=-1))


def _update(carry, z, context, WP):
    """One step given ``W_h h[t-1] = WP[0]``."""
    _, c = carry
    i, f, g, o = (x + h for x, h in zip(z, jnp.split(WP[0], 4)))
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    h = jax.nn.sigmoid(o) * jnp.tanh(c)
    return (h, c), h


# The LSTM as the time loop sees it: W_h multiplies the previous h; a skipped step repeats h.
_RECURRENCE = _scan.Recurrence(
    project_inputs=_project, read=lambda carry, z: (carry[0][None], None), update=_update,
    skip_output=lstm_cell.skip_output, project_in_loop=True)


def _kernel_step(carry, z, pre):
    """The step of the fused kernel (``attnrnn._cell_kernel``) given ``z = W_x x[t] + b``
    and ``pre = W_h h[t-1]``; it saves the local derivatives ``step_back`` multiplies by."""
    _, c = carry
    i, f, g, o = (x + p for x, p in zip(z, jnp.split(pre, 4, axis=-1)))
    i, f, g, o = jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)
    c_new = f * c + i * g
    tanh_c = jnp.tanh(c_new)
    saved = (tanh_c * o * (1 - o), o * (1 - tanh_c * tanh_c), g * i * (1 - i),
             c * f * (1 - f), i * (1 - g * g), f)
    return (o * tanh_c, c_new), saved


def _kernel_step_back(saved, delta):
    """From ``δ = (∂ℓ/∂h[t], ∂ℓ/∂c[t])``: ``∂ℓ/∂c[t]`` in full is ``δ_c + δ_h o (1 - tanh²
    c[t])``; the gates' pre-activations get ``δ_h tanh c[t] · o(1 - o)`` (o) and ``∂ℓ/∂c[t]``
    times ``g i(1 - i)``, ``c[t-1] f(1 - f)``, ``i (1 - g²)`` (i, f, g) — ``∂ℓ/∂pre`` and
    ``∂ℓ/∂z`` alike; ``∂ℓ/∂c[t-1] = ∂ℓ/∂c[t] f``, and ``h[t-1]`` is reached through ``W_h``
    alone."""
    s_o, s_c, s_i, s_f, s_g, f = saved
    d_h, d_c = delta
    d_c = d_c + d_h * s_c
    d_gates = jnp.concatenate([d_c * s_i, d_c * s_f, d_c * s_g, d_h * s_o], axis=-1)
    return (None, d_c * f), d_gates, None


# backward="fused": the kernel is the whole loop (the loop reads nothing else of it).
_KERNEL = _scan.Recurrence(project_inputs=_project, read=None, update=None, kernel=gate_kernel(
    GateCell(project=affine, step=_kernel_step, step_back=_kernel_step_back)))
