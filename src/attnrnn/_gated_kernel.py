"""The gated RNN's time loop with a hand-written backward pass (``jax.custom_vjp``).

Autodiff through ``lax.scan`` accumulates ``∂ℓ/∂W_h`` inside the backward loop, one rank-1
update per step. Fused RNN libraries instead carry only the state gradient backwards and
leave every weight gradient to one large matrix product after the loop; this does the same.
The input projections ``z_c[t] = W_c x[t]`` and ``z_x[t] = W_x x[t]`` are computed for every
step in one matrix product before the loop (by ``gated_kernel``), so their gradients
(``∂ℓ/∂W_c``, ``∂ℓ/∂W_x``, ``∂ℓ/∂x``) are JAX's own products of the ``∂ℓ/∂z`` returned
here; under ``jax.grad`` of a vmapped loss that is one product over batch and time. With
``δ[t] = ∂ℓ/∂h[t]`` and ``g[t]`` the cotangent of the output ``h[t]``::

    δ[t] = g[t] + ∂ℓ/∂h[t] through h[t+1]          (the carried state gradient)
    ∂ℓ/∂z_x[t] = (1 - c[t]) ⊙ δ[t]
    ∂ℓ/∂z_c[t] = (h[t-1] - z_x[t]) ⊙ c[t] ⊙ (1 - c[t]) ⊙ δ[t]       (= ∂ℓ/∂(gate pre-activation))
    ∂ℓ/∂h[t-1] = c[t] ⊙ δ[t] + W_h^T ∂ℓ/∂z_c[t]
    ∂ℓ/∂W_h = Σ_t ∂ℓ/∂z_c[t] h[t-1]^T                      (one product after the loop)

A skipped step (mask False) passes ``δ`` straight through and contributes nothing.

``chunk`` trades compute for memory: the forward pass keeps only every ``chunk``-th state,
and the backward pass recomputes each chunk's projections, states and gates just before it
needs them (from ``xs``, ``W_c``, ``W_x``), so what is stored for the backward pass grows with ``T / chunk + chunk``
instead of ``T`` (``chunk ≈ √T`` gives ``√T``), beyond the inputs themselves.

This is the gated RNN's ``Recurrence.kernel`` (``attnrnn._scan``): the loop calls it for
``backward="fused"``, after flipping a reversed sequence.

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

from attnrnn._batching import batch_aware, join_blocks, row_blocks, split_like, time_major
from attnrnn._scan import chunked_backward

__all__ = ["gate_update", "gated_step", "gated_kernel"]


def gate_update(h_prev, zc, zx, recurrent):
    """The gated RNN's equation given the input projections ``zc = W_c x[t]``,
    ``zx = W_x x[t]`` and ``recurrent = W_h h[t-1]``: ``c = σ(zc + W_h h[t-1])``,
    ``h[t] = c ⊙ h[t-1] + (1 - c) ⊙ zx``; returns ``(h[t], c)``. Arrays may carry leading
    batch axes."""
    c = jax.nn.sigmoid(zc + recurrent)
    return c * h_prev + (1 - c) * zx, c


def gated_step(W_h, h_prev, zc, zx):
    """``gate_update`` with ``W_h h[t-1]`` computed here."""
    return gate_update(h_prev, zc, zx, h_prev @ W_h.T)


# Below, arrays are time-major inside the loops: xs (T, B, n), h (B, m), keep (T, B).

def _forward(W_h, h0, zc, zx, keep, unroll):
    """States, gates and ``h[t-1] - z_x[t]`` (what the gate's derivative needs) of every
    step from ``h0`` (a caller that needs only the states leaves the rest to XLA's dead-code
    elimination); ``keep`` None means no step is skipped (and no select is emitted)."""

    def step(h, inputs):
        zc_t, zx_t, keep_t = inputs
        h_new, c = gated_step(W_h, h, zc_t, zx_t)
        if keep_t is not None:
            h_new = jnp.where(keep_t[:, None], h_new, h)
        return h_new, (h_new, c, h - zx_t)

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


def _states(W_blocks, h0, zc, zx, keep, *, unroll):
    """Batched primal: ``h0 (B, m)``, ``zc, zx (B, T, m)``, ``keep (B, T)`` -> ``hs (B, T, m)``."""
    hs, _, _ = _forward(join_blocks(W_blocks), h0, time_major(zc), time_major(zx),
                        time_major(keep), unroll)
    return time_major(hs)


def _states_and_residuals(W_blocks, h0, zc, zx, keep, *, unroll, chunk):
    W_h = join_blocks(W_blocks)
    hs, cs, gaps = _forward(W_h, h0, time_major(zc), time_major(zx), time_major(keep),
                            unroll)
    if chunk is None:
        return time_major(hs), (time_major(hs), time_major(cs), time_major(gaps))
    # Keep only the state entering each chunk; the backward pass recomputes the rest.
    starts = jnp.concatenate([h0[None], hs[chunk - 1 : -1 : chunk]])
    return time_major(hs), (time_major(starts),)


def _gradients(shared, h0, keep, xs, residuals, g, *, unroll, chunk):
    """Batched backward pass: per-example ``∂ℓ/∂W_h (B, m, m)``, ``∂ℓ/∂h0``, ``∂ℓ/∂z_c``,
    ``∂ℓ/∂z_x (B, T, m)``."""
    W_blocks, projection = shared
    W_h = join_blocks(W_blocks)
    keep_t, g_t = time_major(keep), time_major(g)
    over_time = partial(jnp.einsum, "tbi,tbj->bij")
    if chunk is None:
        hs, cs, gaps = map(time_major, residuals)
        h_prev = jnp.concatenate([h0[None], hs[:-1]])
        dh0, (dzc, dzx) = _backward(W_h, cs, gaps, keep_t, g_t, jnp.zeros_like(h0), unroll)
        return (split_like(over_time(dzc, h_prev), W_blocks), dh0, time_major(dzc),
                time_major(dzx))

    W_c, W_x = projection
    starts = time_major(residuals[0])
    T, batch = g_t.shape[:2]
    if keep_t is None:
        keep_t = jnp.ones((T, batch), bool)  # the chunks' padding must be skipped steps

    def recompute(h_start, steps):  # the chunk's states and gates, from the state entering it
        xs_c, keep_c, _ = steps
        hs_c, cs_c, gaps_c = _forward(W_h, h_start, xs_c @ W_c.T, xs_c @ W_x.T, keep_c, unroll)
        return jnp.concatenate([h_start[None], hs_c[:-1]]), cs_c, gaps_c

    def backward(stored, steps, dh):
        h_prev, cs_c, gaps_c = stored
        _, keep_c, g_c = steps
        dh, (dzc, dzx) = _backward(W_h, cs_c, gaps_c, keep_c, g_c, dh, unroll)
        return dh, over_time(dzc, h_prev), (dzc, dzx)

    dh0, dW_h, (dzc, dzx) = chunked_backward(
        recompute, backward, starts, (time_major(xs), keep_t, g_t), T, chunk,
        jnp.zeros_like(starts[0]), jnp.zeros((batch, *W_h.shape), W_h.dtype))
    return split_like(dW_h, W_blocks), dh0, time_major(dzc), time_major(dzx)


@partial(jax.custom_vjp, nondiff_argnums=(6, 7))
def _gated_scan(W_blocks, h0, zc, zx, keep, recompute, unroll=1, chunk=None):
    """``hs (T, m)`` of the gated RNN with ``W_h`` in row blocks
    (``attnrnn._batching.row_blocks``) from ``h0`` given the input projections
    ``zc = xs W_c^T`` and ``zx = xs W_x^T (T, m)``, skipping the steps where the boolean
    ``keep (T,)`` is False (None: none skipped). ``recompute`` is ``(xs, W_c, W_x)`` when
    ``chunk`` is set (the backward pass recomputes each chunk's projections from them),
    else None; it gets a zero cotangent: gradients reach ``xs``, ``W_c`` and ``W_x``
    through ``zc`` and ``zx``, as JAX's own products (under ``jax.grad`` of a vmapped loss,
    one product over batch and time)."""
    return batch_aware(partial(_states, unroll=unroll))(W_blocks, h0, zc, zx, keep)


def _gated_scan_fwd(W_blocks, h0, zc, zx, keep, recompute, unroll, chunk):
    hs, residuals = batch_aware(partial(_states_and_residuals, unroll=unroll, chunk=chunk))(
        W_blocks, h0, zc, zx, keep)
    return hs, (W_blocks, h0, keep, recompute, residuals)


def _gated_scan_bwd(unroll, chunk, stored, g):
    W_blocks, h0, keep, recompute, residuals = stored
    # Per example: xs; shared: the projection weights (W_c, W_x).
    xs, projection = (None, None) if recompute is None else (recompute[0], recompute[1:])
    grads = batch_aware(partial(_gradients, unroll=unroll, chunk=chunk))(
        (W_blocks, projection), h0, keep, xs, residuals, g)
    return (*grads, None, jax.tree.map(jnp.zeros_like, recompute))


_gated_scan.defvjp(_gated_scan_fwd, _gated_scan_bwd)


def gated_kernel(W, inputs, h0, xs, keep, unroll, chunk):
    """The gated RNN's loop as ``attnrnn._scan`` plugs it in: ``W = W_h[None]``,
    ``inputs = (W_c, W_x)``, ``xs`` the raw inputs; returns ``(final state, hs)``."""
    W_c, W_x = inputs
    recompute = None if chunk is None else lax.stop_gradient((xs, W_c, W_x))
    hs = _gated_scan(row_blocks(W[0]), h0, xs @ W_c.T, xs @ W_x.T, keep, recompute, unroll,
                     chunk)
    return (hs[-1] if hs.shape[0] else h0), hs


gated_kernel.has_forward_mode = False  # a custom_vjp written for a batch (see attnrnn._scan)
