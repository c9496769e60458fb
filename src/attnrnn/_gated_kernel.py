"""The gated RNN's time loop with a hand-written backward pass (``jax.custom_vjp``).

Autodiff through ``lax.scan`` accumulates ``∂ℓ/∂W_h`` inside the backward loop, one rank-1
update per step. Fused RNN libraries instead carry only the state gradient backwards and
leave every weight gradient to one large matrix product after the loop; this does the same.
With ``z_c[t] = W_c x[t]`` and ``z_x[t] = W_x x[t]`` (both computed for every step in one
matrix product before the loop), ``δ[t] = ∂ℓ/∂h[t]`` and ``g[t]`` the cotangent of the
output ``h[t]``::

    δ[t] = g[t] + ∂ℓ/∂h[t] through h[t+1]          (the carried state gradient)
    ∂ℓ/∂z_x[t] = (1 - c[t]) ⊙ δ[t]
    ∂ℓ/∂z_c[t] = (h[t-1] - z_x[t]) ⊙ c[t] ⊙ (1 - c[t]) ⊙ δ[t]       (= ∂ℓ/∂(gate pre-activation))
    ∂ℓ/∂h[t-1] = c[t] ⊙ δ[t] + W_h^T ∂ℓ/∂z_c[t]
    ∂ℓ/∂W_h = Σ_t ∂ℓ/∂z_c[t] h[t-1]^T,  ∂ℓ/∂W_c = Σ_t ∂ℓ/∂z_c[t] x[t]^T,
    ∂ℓ/∂W_x = Σ_t ∂ℓ/∂z_x[t] x[t]^T,  ∂ℓ/∂x[t] = W_c^T ∂ℓ/∂z_c[t] + W_x^T ∂ℓ/∂z_x[t]
                                                            (each one product after the loop)

A skipped step (mask False) passes ``δ`` straight through and contributes nothing.

``chunk`` trades compute for memory: the forward pass keeps only every ``chunk``-th state,
and the backward pass recomputes each chunk's states and gates just before it needs them,
so what is stored for the backward pass grows with ``T / chunk + chunk`` instead of ``T``
(``chunk ≈ √T`` gives ``√T``), beyond the inputs and outputs themselves.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["gated_step", "gated_scan"]


def gated_step(W_h, h_prev, zc, zx):
    """One step given the input projections ``zc = W_c x[t]``, ``zx = W_x x[t]``:
    ``c = σ(zc + W_h h[t-1])``, ``h[t] = c ⊙ h[t-1] + (1 - c) ⊙ zx``; returns ``(h[t], c)``."""
    c = jax.nn.sigmoid(zc + W_h @ h_prev)
    return c * h_prev + (1 - c) * zx, c


def _forward(W_h, h0, zc, zx, keep, unroll, residuals=True):
    """States, and with ``residuals`` the gates and ``h[t-1] - z_x[t]`` (what the gate's
    derivative needs), of every step from ``h0``; ``keep`` None means no step is skipped
    (and no select is emitted)."""

    def step(h, inputs):
        zc_t, zx_t, keep_t = inputs
        h_new, c = gated_step(W_h, h, zc_t, zx_t)
        if keep_t is not None:
            h_new = jnp.where(keep_t, h_new, h)
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
        dh_prev = c * delta + W_h.T @ dzc
        if keep_t is None:
            return dh_prev, (dzc, dzx)
        zero = jnp.zeros_like(delta)
        return jnp.where(keep_t, dh_prev, delta), (jnp.where(keep_t, dzc, zero),
                                                   jnp.where(keep_t, dzx, zero))

    return lax.scan(step, dh_last, (g, cs, gaps, keep), reverse=True, unroll=unroll)


@partial(jax.custom_vjp, nondiff_argnums=(4, 5))
def gated_scan(params, h0, xs, keep, unroll=1, chunk=None):
    """``hs (T, m)`` of the gated RNN over ``xs (T, n)`` from ``h0``, skipping the steps where
    the boolean ``keep (T,)`` is False (None: none skipped); differentiable in ``params``,
    ``h0`` and ``xs``."""
    W_c, W_h, W_x = params
    return _forward(W_h, h0, xs @ W_c.T, xs @ W_x.T, keep, unroll, residuals=False)[0]


def _gated_scan_fwd(params, h0, xs, keep, unroll, chunk):
    W_c, W_h, W_x = params
    hs, cs, gaps = _forward(W_h, h0, xs @ W_c.T, xs @ W_x.T, keep, unroll)
    if chunk is None:
        return hs, (params, h0, xs, keep, hs, cs, gaps)
    # Keep only the state entering each chunk; the backward pass recomputes the rest.
    starts = jnp.concatenate([h0[None], hs[chunk - 1 : -1 : chunk]])
    return hs, (params, starts, xs, keep)


def _input_grads(params, xs, h_prev, dzc, dzx):
    """Weight and input gradients of one stretch of steps, as whole matrix products."""
    W_c, _, W_x = params
    grads = type(params)(dzc.T @ xs, dzc.T @ h_prev, dzx.T @ xs)
    return grads, dzc @ W_c + dzx @ W_x


def _gated_scan_bwd(unroll, chunk, residuals, g):
    if chunk is None:
        params, h0, xs, keep, hs, cs, gaps = residuals
        h_prev = jnp.concatenate([h0[None], hs[:-1]])
        dh0, (dzc, dzx) = _backward(params.W_h, cs, gaps, keep, g, jnp.zeros_like(h0), unroll)
        grads, dxs = _input_grads(params, xs, h_prev, dzc, dzx)
        return grads, dh0, dxs, None

    params, starts, xs, keep = residuals
    W_c, W_h, W_x = params
    T = xs.shape[0]
    n_chunks = starts.shape[0]

    if keep is None:
        keep = jnp.ones((T,), bool)  # the padding below must be skipped steps

    def pieces(a):  # (T, ...) -> (n_chunks, chunk, ...); padding steps are skipped steps
        pad = jnp.zeros((n_chunks * chunk - T, *a.shape[1:]), a.dtype)
        return jnp.concatenate([a, pad]).reshape(n_chunks, chunk, *a.shape[1:])

    def one_chunk(carry, inputs):
        dh, total = carry
        h_start, xs_c, keep_c, g_c = inputs
        hs_c, cs_c, gaps_c = _forward(W_h, h_start, xs_c @ W_c.T, xs_c @ W_x.T, keep_c, unroll)
        h_prev = jnp.concatenate([h_start[None], hs_c[:-1]])
        dh, (dzc, dzx) = _backward(W_h, cs_c, gaps_c, keep_c, g_c, dh, unroll)
        grads, dxs_c = _input_grads(params, xs_c, h_prev, dzc, dzx)
        return (dh, jax.tree.map(jnp.add, total, grads)), dxs_c

    init = (jnp.zeros_like(starts[0]), jax.tree.map(jnp.zeros_like, params))
    (dh0, grads), dxs = lax.scan(
        one_chunk, init, (starts, pieces(xs), pieces(keep), pieces(g)), reverse=True)
    return grads, dh0, dxs.reshape(-1, xs.shape[1])[:T], None


gated_scan.defvjp(_gated_scan_fwd, _gated_scan_bwd)
