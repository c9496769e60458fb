"""The gated RNN's time loop with a hand-written backward pass (``jax.custom_vjp``).

Autodiff through ``lax.scan`` accumulates ``∂ℓ/∂W_h`` inside the backward loop, one rank-1
update per step. Fused RNN libraries instead carry only the state gradient backwards and
leave every weight gradient to one large matrix product after the loop; this does the same.
The input projections ``z_c[t] = W_c x[t]`` and ``z_x[t] = W_x x[t]`` are computed for every
step in one matrix product before the loop, by the caller, so their gradients (``∂ℓ/∂W_c``,
``∂ℓ/∂W_x``, ``∂ℓ/∂x``) are JAX's own products of the ``∂ℓ/∂z`` returned here; under
``jax.grad`` of a vmapped loss that is one product over batch and time. With
``δ[t] = ∂ℓ/∂h[t]`` and ``g[t]`` the cotangent of the output ``h[t]``::

    δ[t] = g[t] + ∂ℓ/∂h[t] through h[t+1]          (the carried state gradient)
    ∂ℓ/∂z_x[t] = (1 - c[t]) ⊙ δ[t]
    ∂ℓ/∂z_c[t] = (h[t-1] - z_x[t]) ⊙ c[t] ⊙ (1 - c[t]) ⊙ δ[t]       (= ∂ℓ/∂(gate pre-activation))
    ∂ℓ/∂h[t-1] = c[t] ⊙ δ[t] + W_h^T ∂ℓ/∂z_c[t]
    ∂ℓ/∂W_h = Σ_t ∂ℓ/∂z_c[t] h[t-1]^T                      (one product after the loop)

A skipped step (mask False) passes ``δ`` straight through and contributes nothing.

``chunk`` trades compute for memory: the forward pass keeps only every ``chunk``-th state,
and the backward pass recomputes each chunk's projections, states and gates just before it
needs them (from ``xs``, ``W_c``, ``W_x``, passed as ``recompute``), so what is stored for
the backward pass grows with ``T / chunk + chunk`` instead of ``T`` (``chunk ≈ √T`` gives
``√T``), beyond the inputs and outputs themselves.

Each half is written for a batch (``attnrnn._batching.batch_aware``), so under ``jax.vmap``
the recurrence is one ``(B, m) @ (m, m)`` product per step rather than vmap's generic rule
applied to the per-example code. ``∂ℓ/∂W_h`` stays per example (``(B, m, m)``), because
vmap of a gradient must give per-example gradients; ``jax.grad`` of a vmapped loss then
sums them.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jax import lax

from attnrnn._batching import batch_aware

__all__ = ["gated_step", "gated_scan"]


def gated_step(W_h, h_prev, zc, zx):
    """One step given the input projections ``zc = W_c x[t]``, ``zx = W_x x[t]``:
    ``c = σ(zc + W_h h[t-1])``, ``h[t] = c ⊙ h[t-1] + (1 - c) ⊙ zx``; returns ``(h[t], c)``.
    ``h_prev``, ``zc`` and ``zx`` may carry leading batch axes."""
    c = jax.nn.sigmoid(zc + h_prev @ W_h.T)
    return c * h_prev + (1 - c) * zx, c


# Below, arrays are time-major inside the loops: xs (T, B, n), h (B, m), keep (T, B).

def _forward(W_h, h0, zc, zx, keep, unroll, residuals=True):
    """States, and with ``residuals`` the gates and ``h[t-1] - z_x[t]`` (what the gate's
    derivative needs), of every step from ``h0``; ``keep`` None means no step is skipped
    (and no select is emitted)."""

    def step(h, inputs):
        zc_t, zx_t, keep_t = inputs
        h_new, c = gated_step(W_h, h, zc_t, zx_t)
        if keep_t is not None:
            h_new = jnp.where(keep_t[:, None], h_new, h)
        return h_new, (h_new, c, h - zx_t) if residuals else (h_new,)

    return lax.scan(step, h0, (zc, zx, keep), unroll=unroll)[1]


def _backward(W_h, cs, gaps, keep, g, dh_last, unroll):
    """The backward loop over one stretch of steps; returns ``∂ℓ/∂h`` before the stretch and
    the per-step ``∂ℓ/∂z_c``, ``∂ℓ/∂z_x``."""

    def step(dh, inputs):
        g_t, c, gap, keep_t = inputs
        delta = g_t + dh
        dzx = (1 - c) * delta
        dzc = gap * c * (1 - c) * delta
        dh_prev = c * delta + dzc @ W_h
        if keep_t is None:
            return dh_prev, (dzc, dzx)
        keep_t = keep_t[:, None]
        return jnp.where(keep_t, dh_prev, delta), (jnp.where(keep_t, dzc, 0),
                                                   jnp.where(keep_t, dzx, 0))

    return lax.scan(step, dh_last, (g, cs, gaps, keep), reverse=True, unroll=unroll)


def _time_major(a):
    return None if a is None else jnp.swapaxes(a, 0, 1)


def _states(W_h, h0, zc, zx, keep, *, unroll):
    """Batched primal: ``h0 (B, m)``, ``zc, zx (B, T, m)``, ``keep (B, T)`` -> ``hs (B, T, m)``."""
    (hs,) = _forward(W_h, h0, _time_major(zc), _time_major(zx), _time_major(keep), unroll,
                     residuals=False)
    return _time_major(hs)


def _states_and_residuals(W_h, h0, zc, zx, keep, *, unroll, chunk):
    hs, cs, gaps = _forward(W_h, h0, _time_major(zc), _time_major(zx), _time_major(keep),
                            unroll)
    if chunk is None:
        return _time_major(hs), (_time_major(cs), _time_major(gaps))
    # Keep only the state entering each chunk; the backward pass recomputes the rest.
    starts = jnp.concatenate([h0[None], hs[chunk - 1 : -1 : chunk]])
    return _time_major(hs), (_time_major(starts),)


def _gradients(shared, h0, keep, xs, hs, residuals, g, *, unroll, chunk):
    """Batched backward pass: per-example ``∂ℓ/∂W_h (B, m, m)``, ``∂ℓ/∂h0``, ``∂ℓ/∂z_c``,
    ``∂ℓ/∂z_x (B, T, m)``."""
    W_h, projection = shared
    keep_t, g_t = _time_major(keep), _time_major(g)
    over_time = partial(jnp.einsum, "tbi,tbj->bij")
    if chunk is None:
        cs, gaps = map(_time_major, residuals)
        h_prev = jnp.concatenate([h0[None], _time_major(hs)[:-1]])
        dh0, (dzc, dzx) = _backward(W_h, cs, gaps, keep_t, g_t, jnp.zeros_like(h0), unroll)
        return over_time(dzc, h_prev), dh0, _time_major(dzc), _time_major(dzx)

    W_c, W_x = projection
    starts = _time_major(residuals[0])
    T, batch = g_t.shape[:2]
    n_chunks = starts.shape[0]
    if keep_t is None:
        keep_t = jnp.ones((T, batch), bool)  # the padding below must be skipped steps

    def pieces(a):  # (T, ...) -> (n_chunks, chunk, ...); padding steps are skipped steps
        pad = jnp.zeros((n_chunks * chunk - T, *a.shape[1:]), a.dtype)
        return jnp.concatenate([a, pad]).reshape(n_chunks, chunk, *a.shape[1:])

    def one_chunk(carry, inputs):
        dh, dW_h = carry
        h_start, xs_c, keep_c, g_c = inputs
        hs_c, cs_c, gaps_c = _forward(W_h, h_start, xs_c @ W_c.T, xs_c @ W_x.T, keep_c, unroll)
        h_prev = jnp.concatenate([h_start[None], hs_c[:-1]])
        dh, (dzc, dzx) = _backward(W_h, cs_c, gaps_c, keep_c, g_c, dh, unroll)
        return (dh, dW_h + over_time(dzc, h_prev)), (dzc, dzx)

    init = (jnp.zeros_like(starts[0]), jnp.zeros((batch, *W_h.shape), W_h.dtype))
    (dh0, dW_h), dzs = lax.scan(
        one_chunk, init, (starts, pieces(_time_major(xs)), pieces(keep_t), pieces(g_t)),
        reverse=True)
    dzc, dzx = (_time_major(d.reshape(n_chunks * chunk, batch, -1)[:T]) for d in dzs)
    return dW_h, dh0, dzc, dzx


@partial(jax.custom_vjp, nondiff_argnums=(6, 7))
def gated_scan(W_h, h0, zc, zx, keep, recompute, unroll=1, chunk=None):
    """``hs (T, m)`` of the gated RNN from ``h0`` given the input projections
    ``zc = xs W_c^T`` and ``zx = xs W_x^T (T, m)``, skipping the steps where the boolean
    ``keep (T,)`` is False (None: none skipped).

    ``recompute`` is ``(xs, W_c, W_x)`` when ``chunk`` is set, else None; it gets a zero
    cotangent, so pass it through ``lax.stop_gradient``: gradients reach ``xs``, ``W_c`` and
    ``W_x`` through ``zc`` and ``zx``.
    """
    return batch_aware(partial(_states, unroll=unroll))(W_h, h0, zc, zx, keep)


def _gated_scan_fwd(W_h, h0, zc, zx, keep, recompute, unroll, chunk):
    hs, residuals = batch_aware(partial(_states_and_residuals, unroll=unroll, chunk=chunk))(
        W_h, h0, zc, zx, keep)
    # With chunks the states are recomputed, so they are not kept for the backward pass.
    return hs, (W_h, h0, keep, recompute, hs if chunk is None else None, residuals)


def _gated_scan_bwd(unroll, chunk, stored, g):
    W_h, h0, keep, recompute, hs, residuals = stored
    # Per example: xs; shared: the projection weights (W_c, W_x).
    xs, projection = (None, None) if recompute is None else (recompute[0], recompute[1:])
    grads = batch_aware(partial(_gradients, unroll=unroll, chunk=chunk))(
        (W_h, projection), h0, keep, xs, hs, residuals, g)
    return (*grads, None, jax.tree.map(jnp.zeros_like, recompute))


gated_scan.defvjp(_gated_scan_fwd, _gated_scan_bwd)
