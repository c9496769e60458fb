"""A time loop with a hand-written backward pass for gate cells (the GRU's, the LSTM's):
``Recurrence.kernel`` of ``attnrnn._scan``, what ``backward="fused"`` runs for them.

A gate cell multiplies its state once per step, ``pre = h[t-1] W_hᵀ + b``, and the rest of
its step is elementwise. Autodiff through ``lax.scan`` stores what each step's derivative
needs and adds ``∂ℓ/∂W_h``'s outer product to an accumulator at every step of the backward
loop. This loop stores each step's local derivatives instead (``GateCell.step``'s ``saved``),
carries only ``∂ℓ/∂carry`` backwards, one ``(B, O) @ (O, m)`` product and a few elementwise
operations a step (``GateCell.step_back``), and forms the weight gradients after the loop::

    δ[t]      = ∂ℓ/∂carry[t], the output's cotangent added to its h
    ∂ℓ/∂pre[t], ∂ℓ/∂z[t], the elementwise part of ∂ℓ/∂carry[t-1]   (step_back)
    ∂ℓ/∂h[t-1] += ∂ℓ/∂pre[t] W_h
    ∂ℓ/∂W_h = Σ_t ∂ℓ/∂pre[t]ᵀ h[t-1],   ∂ℓ/∂b = Σ_t ∂ℓ/∂pre[t]         (after the loop)

``z[t] = project(inputs, x[t])`` are the input projections, computed for every step in one
product before the loop, so their gradients are JAX's own products; a call that is not
differentiated may instead project inside each step (``IN_LOOP_FEATURES``), from the raw
``xs`` that ride along with their gradients stopped. A skipped step (mask False) holds the
carry, passes ``δ`` through and contributes nothing. ``chunk`` keeps only the carry entering
every chunk and recomputes each chunk's steps before its backward loop, as the gated RNN's
kernel does.

Each half is written for a batch (``attnrnn._batching.batch_aware``): under ``jax.vmap`` the
state is one ``(B, m) @ (m, O)`` product a step. Weight gradients stay per example, as vmap
of a gradient must give them; ``jax.grad`` of a vmapped loss sums them.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from attnrnn._batching import batch_aware, join_blocks, row_blocks, split_like, time_major
from attnrnn._scan import _select, chunked_backward, chunks, unchunk

__all__ = ["GateCell", "affine", "gate_kernel"]


class GateCell(NamedTuple):
    """A gate cell's equations for the kernel, on a batch (leading axis ``B``); the carry is
    a tuple whose first entry is ``h (B, m)``, the step's output.

    Attributes:
      project: ``(inputs, xs) -> z``: the input projection of ``xs (S, n)``, ``(S, G)``: one
        array for every gate (its gradient is then one product, with no copy to join the
        gates' parts).
      step: ``(carry, z, pre) -> (carry, saved)`` given ``z`` as a tuple of one ``(B, m)``
        array per gate and ``pre = h W_hᵀ + b``; ``saved`` what ``step_back`` needs.
      step_back: ``(saved, δ) -> (d_carry, d_pre, d_z)``: ``δ = ∂ℓ/∂`` the new carry; returns
        ``∂ℓ/∂`` the old carry except the part through ``pre`` (the loop adds
        ``d_pre W_h``; its ``h`` entry None: nothing else), ``∂ℓ/∂pre``, and ``∂ℓ/∂z`` (None:
        the same as ``∂ℓ/∂pre``, written once).
    """

    project: Callable
    step: Callable
    step_back: Callable


def affine(inputs, xs):
    """The usual projection, every gate in one array: ``xs W_xᵀ + b`` for
    ``inputs = (W_xᵀ, b)``."""
    W_x_T, b = inputs
    return xs @ W_x_T + b[None, :]


# A call that is not differentiated projects inputs with at least this many features inside
# the step (the autodiff path's threshold, attnrnn._scan.IN_LOOP_FEATURES, is higher because
# its gradient then forms the projection's weight gradient step by step; this kernel's never
# does). In the loop, GRU forward at batch 32, T 100, n 16, m 32: 0.80-0.87x Flax's speed
# before the loop, 1.00x in it; at n = 1 the product before the loop stays faster.
IN_LOOP_FEATURES = 8
SMALL_STEP = 1024  # see _over_time


def _over_time(step, carry, xs, *, reverse=False, unroll=1):
    """``lax.scan`` of ``step(carry, x) -> (carry, out)`` along axis 1 of batch-major arrays
    ``xs (B, T, …)``; the outputs are ``(B, T, …)``.

    A batch must lead what the kernel returns under vmap, and ``lax.scan`` scans the leading
    axis: through it, every input and residual is transposed twice. For a large step the loop
    instead reads and writes axis 1 in place (GRU at batch 64, T 200, m 128: forward 8%,
    gradient 4% faster than through the copies); for a small one
    (``B · m`` up to ``SMALL_STEP``) the copies are cheap and ``lax.scan``'s contiguous steps
    are faster (GRU gradient at batch 100, T 40, m 6: 13% faster than in place).
    """
    batch, m = jax.tree.leaves(carry)[0].shape
    T = jax.tree.leaves(xs)[0].shape[1]
    if batch * m <= SMALL_STEP or T == 0:  # (no step to read in place)
        carry, outs = lax.scan(step, carry, time_major(xs), reverse=reverse, unroll=unroll)
        return carry, time_major(outs)
    at = lambda t: jax.tree.map(  # noqa: E731
        lambda a: lax.dynamic_index_in_dim(a, t, 1, keepdims=False), xs)
    one_step = jax.tree.map(lambda a: jax.ShapeDtypeStruct((a.shape[0], *a.shape[2:]),
                                                           a.dtype), xs)
    out_like = jax.eval_shape(lambda c, x: step(c, x)[1], carry, one_step)
    outs = jax.tree.map(lambda o: jnp.zeros((o.shape[0], T, *o.shape[1:]), o.dtype), out_like)

    def body(i, state):
        carry, outs = state
        t = T - 1 - i if reverse else i
        carry, out = step(carry, at(t))
        return carry, jax.tree.map(lambda o, v: lax.dynamic_update_index_in_dim(o, v, t, 1),
                                   outs, out)

    return lax.fori_loop(0, T, body, (carry, outs), unroll=unroll)


def _project(cell, proj, xs):
    """``cell.project`` of ``xs (..., n)`` with any leading axes, as one ``(·, n)`` product."""
    z = cell.project(proj, xs.reshape(-1, xs.shape[-1]))
    return z.reshape(*xs.shape[:-1], z.shape[-1])


def _gates(z, init):
    """``z (…, G)`` as a tuple of one ``(…, m)`` array per gate."""
    return tuple(jnp.split(z, z.shape[-1] // init[0].shape[-1], axis=-1))


def _held(keep, new, old):
    """``new`` where ``keep (B,)``, else ``old``; ``keep`` None keeps every step."""
    return new if keep is None else _select(keep[:, None], new, old)


def _forward(cell, W_h, b, proj, init, inputs, keep, unroll, in_loop, residuals=True):
    """``(final carry, (hs, saved))`` over batch-major ``inputs``: the projections
    ``z (B, T, G)``, or with ``in_loop`` the raw ``xs (B, T, n)``, projected inside the
    step."""
    W_h_T = W_h.T  # out here: inside, XLA copied the transpose at every step

    def step(carry, inputs):
        x, keep_t = inputs
        z = _project(cell, proj, x) if in_loop else x
        z = z if isinstance(z, tuple) else _gates(z, carry)
        pre = carry[0] @ W_h_T
        new, saved = cell.step(carry, z, pre if b is None else pre + b[None])
        new = _held(keep_t, new, carry)
        return new, (new[0], saved if residuals else None)

    return _over_time(step, init, (inputs, keep), unroll=unroll)


def _backward(cell, W_h, saved, keep, g, d_final, unroll):
    """The reverse loop over a stretch of steps (batch-major): ``(∂ℓ/∂`` the carry entering
    it, per step ``(∂ℓ/∂pre, ∂ℓ/∂z or None))``."""

    def step(d_carry, inputs):
        g_t, saved_t, keep_t = inputs
        delta = (g_t + d_carry[0], *d_carry[1:])
        d_prev, d_pre, d_z = cell.step_back(saved_t, delta)
        d_h = d_pre @ W_h
        d_prev = (d_h if d_prev[0] is None else d_prev[0] + d_h, *d_prev[1:])
        if keep_t is None:
            return d_prev, (d_pre, d_z)
        zero = lambda a: jnp.where(keep_t[:, None], a, 0)  # noqa: E731
        return _held(keep_t, d_prev, delta), (zero(d_pre), jax.tree.map(zero, d_z))

    d_init, (d_pre, d_z) = _over_time(step, d_final, (g, saved, keep), reverse=True,
                                      unroll=unroll)
    return d_init, (d_pre, d_pre if d_z is None else d_z)


def _previous(init, hs):
    """``h[t-1]`` of every step, ``(B, T, m)``."""
    return jnp.concatenate([init[0][:, None], hs[:, :-1]], axis=1)


def _primal(cell, unroll, shared, init, zs, keep, xs):
    W_blocks, b, proj = shared
    in_loop = xs.shape[-1] >= IN_LOOP_FEATURES  # then zs is left unused, and never computed
    # Before the loop, one array per gate: a gate's columns cut out of one (B, G) slice at
    # every step made the forward 2.4-2.9x slower at batch 100 and 32 (n 1 and 16).
    final, (hs, _) = _forward(cell, join_blocks(W_blocks), b, proj, init,
                              xs if in_loop else _gates(zs, init), keep, unroll, in_loop,
                              residuals=False)
    return final, hs


def _primal_and_residuals(cell, unroll, chunk, shared, init, zs, keep):
    W_blocks, b, proj = shared
    W_h = join_blocks(W_blocks)
    if chunk is None:
        final, (hs, saved) = _forward(cell, W_h, b, proj, init, zs, keep, unroll, False)
        return (final, hs), (hs, saved)
    # Keep only the carry entering each chunk; the backward pass recomputes the rest.
    T = zs.shape[1]

    def one_chunk(carry, inputs):
        new, (hs, _) = _forward(cell, W_h, b, proj, carry, *time_major(inputs), unroll,
                                False, residuals=False)
        return new, (time_major(hs), carry)

    final, (hs, starts) = lax.scan(one_chunk, init, _chunked(zs, keep, T, chunk))
    return (final, time_major(unchunk(hs, T))), time_major(starts)


def _chunked(xs, keep, T, chunk):
    """``xs`` and ``keep`` as time-major chunks; the padding steps are skipped steps."""
    keep = jnp.ones(xs.shape[:2], bool) if keep is None else keep
    return chunks(time_major(xs), T, chunk, 0), chunks(time_major(keep), T, chunk, False)


def _gradients(cell, unroll, chunk, shared, init, keep, xs, residuals, g, d_final):
    """Per example: ``∂ℓ/∂`` the blocks of ``W_h`` (``(B, rows, m)`` each), ``∂ℓ/∂b (B, O)``
    (None without ``b``), ``∂ℓ/∂init``, ``∂ℓ/∂z``."""
    W_blocks, b, proj = shared
    W_h = join_blocks(W_blocks)
    over_time = partial(jnp.einsum, "bto,bti->boi")
    if chunk is None:
        hs, saved = residuals
        d_init, (d_pre, d_zs) = _backward(cell, W_h, saved, keep, g, d_final, unroll)
        d_W = over_time(d_pre, _previous(init, hs))
        d_b = None if b is None else d_pre.sum(1)
    else:
        batch, T = g.shape[:2]

        def recompute(start, steps):  # the chunk's h[t-1] and saved, from the carry entering it
            x_c, keep_c, _ = time_major(steps)
            _, (hs_c, saved_c) = _forward(cell, W_h, b, proj, start, _project(cell, proj, x_c),
                                          keep_c, unroll, False)
            return _previous(start, hs_c), saved_c

        def backward(stored, steps, d_carry):
            h_prev, saved_c = stored
            _, keep_c, g_c = time_major(steps)
            d_carry, (d_pre, d_z) = _backward(cell, W_h, saved_c, keep_c, g_c, d_carry, unroll)
            d_b = None if b is None else d_pre.sum(1)
            return d_carry, (over_time(d_pre, h_prev), d_b), time_major(d_z)

        keep = jnp.ones((batch, T), bool) if keep is None else keep
        zero_b = None if b is None else jnp.zeros((batch, *b.shape), b.dtype)
        d_init, (d_W, d_b), d_zs = chunked_backward(
            recompute, backward, time_major(residuals), time_major((xs, keep, g)), T, chunk,
            d_final, (jnp.zeros((batch, *W_h.shape), W_h.dtype), zero_b))
        d_zs = time_major(d_zs)
    return split_like(d_W, W_blocks), d_b, d_init, d_zs


@partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _loop(cell, unroll, chunk, W_blocks, b, init, zs, keep, raw):
    """``(final carry, hs (T, m))`` of ``cell`` from ``init`` given the projections
    ``zs (T, G)``, skipping the steps where the boolean ``keep (T,)`` is False (None: none
    skipped). ``raw = (xs, projection inputs)``, gradients stopped, is what a forward with
    wide inputs projects step by step and what a rematerialised backward pass projects chunk
    by chunk; its cotangent is zero: gradients reach ``xs`` and the projection through
    ``zs``, as JAX's own products (under ``jax.grad`` of a vmapped loss, one product over
    batch and time)."""
    xs, proj = raw
    return batch_aware(partial(_primal, cell, unroll))((W_blocks, b, proj), init, zs, keep, xs)


def _loop_fwd(cell, unroll, chunk, W_blocks, b, init, zs, keep, raw):
    outs, residuals = batch_aware(partial(_primal_and_residuals, cell, unroll, chunk))(
        (W_blocks, b, raw[1]), init, zs, keep)
    return outs, (W_blocks, b, init, keep, raw if chunk else None, residuals)


def _loop_bwd(cell, unroll, chunk, stored, cotangents):
    W_blocks, b, init, keep, raw, residuals = stored
    d_final, g = cotangents
    xs, proj = (None, None) if raw is None else raw
    grads = batch_aware(partial(_gradients, cell, unroll, chunk))(
        (W_blocks, b, proj), init, keep, xs, residuals, g, d_final)
    return (*grads, None, None)


_loop.defvjp(_loop_fwd, _loop_bwd)


def gate_kernel(cell: GateCell) -> Callable:
    """``cell``'s loop as ``attnrnn._scan`` plugs it in (``Recurrence.kernel``):
    ``kernel(W, inputs, init, xs, keep, unroll, chunk) -> (final carry, hs)`` with
    ``W = W_h[None]`` and ``inputs = (projection inputs, b or None)``."""

    def kernel(W, inputs, init, xs, keep, unroll, chunk):
        proj, b = inputs
        one = not isinstance(init, tuple)  # a carry that is h alone
        final, hs = _loop(cell, unroll, chunk, row_blocks(W[0]), b, (init,) if one else init,
                          cell.project(proj, xs), keep, lax.stop_gradient((xs, proj)))
        return (final[0] if one else final), hs

    kernel.has_forward_mode = False  # a custom_vjp written for a batch (see attnrnn._scan)
    return kernel
