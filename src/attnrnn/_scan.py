"""THE time loop: every recurrence of the library runs through ``run_recurrence``, and a
user's own cell through the public [`attnrnn.run`][attnrnn.loop.run]; the loop owns
masking, reverse order, unrolling, rematerialisation, the initial and final state, and the
choice of backward pass. Models describe their equations (a ``Recurrence``); they never
see how the loop is differentiated.

The contract every recurrence keeps (the gated RNN, AttentionRNN, the LSTM, the 1997 LSTM,
the GRU): ``f(params, xs, *, initial_state=None, mask=None, reverse=False, unroll=1,
remat_chunk=None, backward=..., return_state=False)`` on ``xs (T, n)``, with
``f_initial_state(params)`` its zero state (the default ``initial_state``); it returns the
outputs ``(T, ...)``, and ``(outputs, final state)`` with ``return_state``, so two chunks fed
through the returned state equal one call. Each checks its keywords with ``check_loop``,
``xs`` with ``check_sequence`` and its initial state with ``initial_state``, the one
preparation they share.

A mask means the same for every recurrence: where ``mask[t]`` is False the step is skipped —
the carry passes through unchanged (so nothing enters an attention history and a finite-k
window does not shift) and the step's output is ``skip_output(carry)`` (the carried state,
and all-zero attention weights).

Backward passes (``backward=``):

- ``"autodiff"``: JAX differentiates the scan (forward mode and higher orders work).
- ``"fused"``: a hand-written reverse pass. A recurrence may bring its own whole-loop kernel
  (``Recurrence.kernel``: the gated RNN's, ``attnrnn._gated_kernel``; the GRU's and the
  LSTM's, ``attnrnn._cell_kernel``); otherwise the loop's weight-tapped pass runs. The
  recurrent weights ``W (L, O, I)`` enter a step only through ``W P`` (``P = read(carry, z)``,
  ``(W P)[l] = W[l] @ P[l]``), so the backward loop can take each step's vector-Jacobian
  product with ``W`` held constant, read ``∂ℓ/∂(W P)`` off a zero "tap" added to the product,
  and form ``∂ℓ/∂W = Σ_t ∂ℓ/∂(W P_t) P_tᵀ`` as one contraction after the loop — where
  autodiff through ``lax.scan`` adds an outer product to an accumulator at every step.

``remat_chunk`` (an int, or ``"sqrt"`` for ``⌈√T⌉``) keeps only the carry entering every
chunk of that many steps for the backward pass and recomputes the chunk's steps just before
they are needed, so what is stored grows with ``T / chunk + chunk`` instead of ``T``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from attnrnn._checks import (as_bool, as_int, check_floating, check_mask, check_rank,
                             check_shape, check_static)

__all__ = ["Recurrence", "Loop", "run_recurrence", "recurrence_step", "scan_steps", "contract",
           "chunks", "unchunk", "check_loop", "check_sequence", "initial_state", "state_shapes",
           "outputs", "chunked_backward", "check_unroll", "check_remat_chunk", "check_backward"]

BACKWARDS = ("autodiff", "fused")
# Inputs with at least this many features are projected inside the loop, step by step, by a
# recurrence that allows it. benchmarks/LOG.md (2026-12-07) has the measurements: in the loop
# the forward gains up to 1.4x at batch 64 (the (T, B, gates) projections are never written
# out and read back) and the gradient loses up to 1.3x at batch 1 and with 16 features (the
# weight gradient becomes a product per step); at one feature the per-step product is mostly
# overhead.
IN_LOOP_FEATURES = 32


class Recurrence(NamedTuple):
    """A recurrence's equations, as the loop needs them.

    Attributes:
      project_inputs: ``(inputs, xs) -> zs``: the part of every step that does not depend on
        the state, for all ``T`` steps at once (before the loop, one matrix product each).
      read: ``(carry, z) -> (P, context)``: ``P (L, I)`` is what the recurrent weights
        ``W (L, O, I)`` multiply; ``context`` anything else the step computed on the way
        that ``update`` needs (or None).
      update: ``(carry, z, context, WP) -> (carry, out)``: the rest of the step, given
        ``WP[l] = W[l] @ P[l]``.
      skip_output: ``carry -> out`` at a skipped step; None: the carry itself.
      project_in_loop: ``project_inputs`` treats each step on its own, so under autodiff the
        loop may run it inside the step on one ``x[t]`` at a time (it does when ``x`` has at
        least ``IN_LOOP_FEATURES`` features: a product over that many features is worth
        its call, and the ``(T, ...)`` projections are never written out and read back).
      kernel: None, or a hand-written whole loop that ``backward="fused"`` uses instead of
        the weight-tapped pass: ``kernel(W, inputs, init, xs, keep, unroll, chunk) ->
        (final, outs)`` over the raw inputs ``xs`` (``keep`` None or boolean ``(T,)``),
        differentiable in ``W``, ``inputs``, ``init`` and ``xs``; a kernel without forward
        mode says so with ``kernel.has_forward_mode = False``.
    """

    project_inputs: Callable
    read: Callable
    update: Callable
    skip_output: Callable | None = None
    kernel: Callable | None = None
    project_in_loop: bool = False


def check_unroll(unroll) -> int | bool:
    """``unroll`` as lax.scan takes it: a positive int, or True/False."""
    if isinstance(unroll, bool):
        return unroll
    return as_int("unroll", unroll, minimum=1)


def check_remat_chunk(remat_chunk, T) -> int | None:
    """None, a positive int, or ``"sqrt"`` (``⌈√T⌉``) as a chunk length (or None)."""
    check_static("remat_chunk", remat_chunk)
    if remat_chunk is None:
        return None
    if isinstance(remat_chunk, str) and remat_chunk == "sqrt":
        return max(1, math.isqrt(T - 1) + 1) if T > 1 else 1
    return as_int("remat_chunk", remat_chunk, minimum=1)


def check_backward(backward) -> str:
    check_static("backward", backward)
    if not isinstance(backward, str) or backward not in BACKWARDS:
        raise ValueError(f"backward must be 'fused' or 'autodiff', got {backward!r}")
    return backward


class Loop(NamedTuple):
    """The keywords every recurrence of the library takes, checked once
    ([`check_loop`][attnrnn._scan.check_loop]): ``mask``, ``reverse``, ``unroll``,
    ``remat_chunk``, ``backward`` (what ``run`` takes) and ``return_state``."""

    mask: jax.Array | None
    reverse: bool
    unroll: int | bool
    remat_chunk: int | None
    backward: str
    return_state: bool

    def run_options(self) -> dict:
        return {"mask": self.mask, "reverse": self.reverse, "unroll": self.unroll,
                "remat_chunk": self.remat_chunk, "backward": self.backward}


def check_loop(T, *, mask, reverse, unroll, remat_chunk, backward, return_state) -> Loop:
    """The one preparation of the loop's keywords every recurrence shares (a ``ValueError`` or
    ``TypeError`` naming the keyword)."""
    return Loop(check_mask(mask, T), as_bool("reverse", reverse), check_unroll(unroll),
                check_remat_chunk(remat_chunk, T), check_backward(backward),
                as_bool("return_state", return_state))


def check_sequence(xs, n) -> int:
    """``xs (T, n)`` of floats, ``n`` the input size of the parameters; returns ``T``."""
    T = check_rank("xs", xs, 2, "(T, n)")[0]
    check_shape("xs", xs, (T, n), "(T, n), n the input_size of params")
    check_floating("xs", xs)
    return T


def initial_state(given, shapes, what, *arrays):
    """``(dtype, carry)``: the computation dtype (of ``arrays`` and ``given``) and the carry
    to start from — zeros of ``shapes`` (the recurrence's state, a pytree of shape tuples'
    ``jax.ShapeDtypeStruct``) when ``given`` is None, else ``given`` checked against them
    (``what`` describes the state in errors) and cast. Gradients flow into ``given``."""
    if given is not None:
        if jax.tree.structure(given) != jax.tree.structure(shapes):
            raise TypeError(f"initial_state must be {what}, got {type(given).__name__}")
        leaves = jax.tree.leaves(given)
        for i, (leaf, like) in enumerate(zip(leaves, jax.tree.leaves(shapes))):
            name = "initial_state" if len(leaves) == 1 else f"initial_state[{i}]"
            check_shape(name, leaf, like.shape, what)
            check_floating(name, leaf)
    dtype = jnp.result_type(*arrays, *jax.tree.leaves(given))
    if given is None:
        return dtype, jax.tree.map(lambda like: jnp.zeros(like.shape, dtype), shapes)
    return dtype, jax.tree.map(lambda leaf: jnp.asarray(leaf, dtype), given)


def state_shapes(*shapes):
    """The state's shapes as ``initial_state`` takes them: one shape, or a tuple of them."""
    structs = tuple(jax.ShapeDtypeStruct(shape, jnp.float32) for shape in shapes)
    return structs[0] if len(structs) == 1 else structs


def outputs(loop: Loop, outs, final):
    """``outs``, with the final carry after it when the call asked for ``return_state``."""
    return (outs, final) if loop.return_state else outs


def _flip(tree):
    return jax.tree.map(lambda a: a[::-1], tree)


def run_recurrence(rec: Recurrence, weights, inputs, init, xs, *, mask=None, reverse=False,
                   unroll=1, remat_chunk=None, backward="autodiff"):
    """Runs ``rec`` over the leading (time) axis of ``xs`` from the carry ``init``.

    Args:
      rec: the ``Recurrence``.
      weights: the recurrent weights ``W (L, O, I)``.
      inputs: the weights of ``rec.project_inputs`` (any pytree).
      init: the initial carry (a pytree).
      xs: a pytree of arrays with a leading time axis ``T``.
      mask: None, or a validated boolean ``(T,)``; False skips that step.
      reverse: process ``t = T-1 .. 0``; outputs stay at their original positions.
      unroll: lax.scan's unroll factor (validated).
      remat_chunk: None, or a validated chunk length (see ``check_remat_chunk``).
      backward: ``"autodiff"`` or ``"fused"`` (validated).

    Returns:
      ``(final_carry, outs)`` with ``outs`` stacked along time.
    """
    if reverse:  # every strategy runs forward over the flipped sequence; outputs flip back
        xs, mask = _flip(xs), None if mask is None else mask[::-1]
    if backward == "fused":
        final, outs = _fused(rec, weights, inputs, init, xs, mask, unroll, remat_chunk)
    else:
        final, outs = _autodiff(rec, weights, inputs, init, xs, mask, unroll, remat_chunk)
    return final, _flip(outs) if reverse else outs


def recurrence_step(rec: Recurrence, weights, inputs, carry, x):
    """One step of ``rec`` on one input ``x (n,)``: ``(carry, out)``, what the library's
    cells compute (each recurrence written once, for its loop and its cell)."""
    z = jax.tree.map(lambda a: a[0], rec.project_inputs(inputs, x[None]))
    return _projected_step(rec, weights, carry, z)


def _projected_step(rec: Recurrence, weights, carry, z):
    """One step given its projected input ``z``: read, ``W P``, update."""
    P, context = rec.read(carry, z)
    return rec.update(carry, z, context, contract(weights, P))


def _fused(rec, weights, inputs, init, xs, mask, unroll, chunk):
    """The hand-written reverse pass (the recurrence's kernel, or the weight-tapped loop).
    It is a ``jax.custom_vjp``, so forward mode (``jax.jvp``, ``jax.jacfwd``,
    ``jax.hessian``) cannot go through it: say so, and what to use instead."""
    try:
        if rec.kernel is not None:
            return rec.kernel(weights, inputs, init, xs, mask, unroll, chunk)
        zs = rec.project_inputs(inputs, xs)
        return _tapped(rec, unroll, chunk, weights, init, zs, mask)
    except (TypeError, AssertionError) as error:
        if not _forward_mode_error(error, rec.kernel):
            raise
        raise TypeError(
            "backward='fused' is a hand-written reverse pass (jax.custom_vjp): reverse mode "
            "(jax.grad, jax.vjp, jax.jacrev) only. For forward mode and higher orders "
            "(jax.jvp, jax.jacfwd, jax.hessian) pass backward='autodiff'.") from error


def _forward_mode_error(error, kernel) -> bool:
    """JAX's refusal to push a tangent through a custom_vjp — a TypeError saying so — or,
    from a kernel that declares it has no forward mode (``kernel.has_forward_mode = False``:
    one written for a batch fails inside ``custom_vmap`` under ``jax.jvp``), an assertion."""
    if isinstance(error, AssertionError):
        return not getattr(kernel, "has_forward_mode", True)
    return "forward-mode" in str(error)


def _select(keep, new, old):
    return jax.tree.map(lambda a, b: jnp.where(keep, a, b), new, old)


def _skip_unless(keep, carry, step_result, skip_output):
    """``step_result = (new_carry, out)`` where ``keep``, else ``(carry, skip_output(carry))``
    (default output: the carry itself); ``keep`` None keeps every step."""
    if keep is None:
        return step_result
    new_carry, out = step_result
    skipped = carry if skip_output is None else skip_output(carry)
    return _select(keep, new_carry, carry), _select(keep, out, skipped)


def contract(weights, P):
    """``W P``: ``weights (L, O, I)`` applied to ``P (L, I)`` lag by lag, ``(L, O)`` — how
    every recurrence's weights meet its state (the one product the weight-tapped pass taps)."""
    if weights.shape[0] == 1:  # as a row vector: under vmap one (B, I) @ (I, O), no transpose
        return (P[0] @ weights[0].T)[None]
    return jnp.einsum("loi,li->lo", weights, P)


def _step(rec, weights, carry, z, keep, tap=None):
    """One step, skipped where ``keep`` is False; ``tap`` is added to ``W P``."""
    P, context = rec.read(carry, z)
    WP = contract(weights, P)
    result = rec.update(carry, z, context, WP if tap is None else WP + tap)
    return _skip_unless(keep, carry, result, rec.skip_output), P


def chunks(tree, T, chunk, fill):
    """``(T, ...)`` arrays as ``(⌈T/chunk⌉, chunk, ...)``, padded at the end with ``fill``
    (``False`` for a mask: the padding steps are skipped steps)."""
    n = -(-T // chunk)

    def one(a):
        pad = jnp.full((n * chunk - T, *a.shape[1:]), fill, a.dtype)
        return jnp.concatenate([a, pad]).reshape(n, chunk, *a.shape[1:])

    return jax.tree.map(one, tree)


def unchunk(tree, T):
    """The inverse of ``chunks``: ``(T, ...)`` again, the padding dropped."""
    return jax.tree.map(lambda a: a.reshape(-1, *a.shape[2:])[:T], tree)


def _chunked_keep(keep, T, chunk):
    """The mask as chunks; the padding steps are skipped steps."""
    return chunks(jnp.ones((T,), bool) if keep is None else keep, T, chunk, False)


def chunked_backward(recompute, backward, starts, steps, T, chunk, d_final, d_weights):
    """The one rematerialised reverse pass (the weight-tapped pass's and the gated kernel's):
    chunk by chunk from the last, each chunk's steps are recomputed from the carry that
    entered it (``recompute(start, chunk_steps) -> stored``) just before its backward loop
    runs (``backward(stored, chunk_steps, d_carry) -> (d_carry, d_weights of the chunk,
    per-step gradients)``). ``starts`` are the carries entering the chunks; ``steps`` every
    step's inputs, time-major, padded into chunks with zeros (a mask's padding is False:
    skipped steps). Returns ``(∂ℓ/∂ first carry, ∂ℓ/∂ weights summed over the chunks,
    per-step gradients (T, ...))``."""

    def one_chunk(state, inputs):
        d_carry, d_w = state
        start, chunk_steps = inputs
        d_carry, d_w_chunk, d_steps = backward(recompute(start, chunk_steps), chunk_steps,
                                               d_carry)
        return (d_carry, jax.tree.map(jnp.add, d_w, d_w_chunk)), d_steps

    (d_first, d_w), d_steps = lax.scan(one_chunk, (d_final, d_weights),
                                       (starts, chunks(steps, T, chunk, 0)), reverse=True)
    return d_first, d_w, unchunk(d_steps, T)


def _autodiff(rec, weights, inputs, init, xs, keep, unroll, chunk):
    """``lax.scan`` of the recurrence's step, differentiated by JAX; the inputs projected
    before the loop, or inside it step by step (``Recurrence.project_in_loop``)."""
    in_loop = rec.project_in_loop and xs.shape[-1] >= IN_LOOP_FEATURES

    def step(carry, z):  # z is x[t] itself when projected in the loop
        if in_loop:
            return recurrence_step(rec, weights, inputs, carry, z)
        return _projected_step(rec, weights, carry, z)

    zs = xs if in_loop else rec.project_inputs(inputs, xs)
    return scan_steps(step, rec.skip_output, init, zs, keep, unroll, chunk)


def scan_steps(step, skip_output, init, zs, keep, unroll, chunk):
    """``lax.scan`` of ``step(carry, z) -> (carry, out)``, a step skipped where ``keep`` is
    False; with ``chunk``, each chunk's scan is a ``jax.checkpoint`` (only the carries between
    chunks are stored)."""

    def body(carry, inputs):
        z, k = inputs
        return _skip_unless(k, carry, step(carry, z), skip_output)

    if chunk is None:
        return lax.scan(body, init, (zs, keep), unroll=unroll)
    T = jax.tree.leaves(zs)[0].shape[0]

    @jax.checkpoint
    def one_chunk(carry, inputs):
        return lax.scan(body, carry, inputs, unroll=unroll)

    final, outs = lax.scan(one_chunk, init, (chunks(zs, T, chunk, 0),
                                             _chunked_keep(keep, T, chunk)))
    return final, unchunk(outs, T)


def _tapped_forward(rec, unroll, weights, init, zs, keep):
    """Outputs, and each step's incoming carry and ``P``."""

    def body(carry, inputs):
        z, k = inputs
        (new_carry, out), P = _step(rec, weights, carry, z, k)
        return new_carry, (out, carry, P)

    return lax.scan(body, init, (zs, keep), unroll=unroll)


@partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _tapped(rec, unroll, chunk, weights, init, zs, keep):
    final, (outs, _, _) = _tapped_forward(rec, unroll, weights, init, zs, keep)
    return final, outs


def _tapped_fwd(rec, unroll, chunk, weights, init, zs, keep):
    if chunk is None:
        final, (outs, carries, Ps) = _tapped_forward(rec, unroll, weights, init, zs, keep)
        return (final, outs), (weights, zs, keep, carries, Ps)
    T = jax.tree.leaves(zs)[0].shape[0]

    def one_chunk(carry, inputs):  # keeps only the carry entering the chunk
        new_carry, (outs, _, _) = _tapped_forward(rec, unroll, weights, carry, *inputs)
        return new_carry, (outs, carry)

    final, (outs, starts) = lax.scan(one_chunk, init, (chunks(zs, T, chunk, 0),
                                                       _chunked_keep(keep, T, chunk)))
    return (final, unchunk(outs, T)), (weights, zs, keep, starts, None)


def _tapped_backward(rec, unroll, weights, carries, zs, keep, d_outs, d_final):
    """The reverse loop over a stretch of steps whose incoming carries are known; returns
    ``∂ℓ/∂`` the stretch's first carry, its inputs, and each step's tap."""
    tap = jnp.zeros(weights.shape[:2], weights.dtype)

    def body(d_carry, inputs):
        carry, z, k, d_out = inputs
        _, vjp = jax.vjp(lambda c, z, t: _step(rec, weights, c, z, k, t)[0], carry, z, tap)
        d_carry, d_z, d_tap = vjp((d_carry, d_out))
        return d_carry, (d_z, d_tap)

    return lax.scan(body, d_final, (carries, zs, keep, d_outs), reverse=True, unroll=unroll)


def _tapped_bwd(rec, unroll, chunk, residuals, cotangents):
    weights, zs, keep, carries, Ps = residuals
    d_final, d_outs = cotangents
    over_time = partial(jnp.einsum, "tlo,tli->loi")
    if chunk is None:
        d_init, (d_zs, d_taps) = _tapped_backward(rec, unroll, weights, carries, zs, keep,
                                                  d_outs, d_final)
        return over_time(d_taps, Ps), d_init, d_zs, None
    T = jax.tree.leaves(zs)[0].shape[0]

    def recompute(start, steps):  # the chunk's carries and P, from the carry entering it
        z, k, _ = steps
        _, (_, carries, Ps) = _tapped_forward(rec, unroll, weights, start, z, k)
        return carries, Ps

    def backward(stored, steps, d_carry):
        carries, Ps = stored
        z, k, d_out = steps
        d_carry, (d_z, d_taps) = _tapped_backward(rec, unroll, weights, carries, z, k, d_out,
                                                  d_carry)
        return d_carry, over_time(d_taps, Ps), d_z

    keep = jnp.ones((T,), bool) if keep is None else keep
    d_init, d_weights, d_zs = chunked_backward(recompute, backward, carries,
                                               (zs, keep, d_outs), T, chunk, d_final,
                                               jnp.zeros_like(weights))
    return d_weights, d_init, d_zs, None


_tapped.defvjp(_tapped_fwd, _tapped_bwd)
