"""The time loop both recurrences share: masking, reverse order, unrolling, rematerialisation.

Written once so the gated RNN and AttentionRNN agree on what a mask means: where
``mask[t]`` is False the step is skipped — the carry passes through unchanged (so nothing
enters an attention history and a finite-k window does not shift) and the step's output is
``skip_output(carry)`` (the carried state, and all-zero attention weights).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
from jax import lax

from attnrnn._checks import as_int

__all__ = ["scan_steps", "check_unroll", "weight_tapped_scan"]


def check_unroll(unroll) -> int | bool:
    """``unroll`` as lax.scan takes it: a positive int, or True/False."""
    if isinstance(unroll, bool):
        return unroll
    return as_int("unroll", unroll, minimum=1)


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


def scan_steps(
    step: Callable,
    init,
    xs,
    *,
    mask=None,
    reverse: bool = False,
    unroll: int | bool = 1,
    remat: bool = False,
    skip_output: Callable | None = None,
):
    """Runs ``carry, out = step(carry, x_t)`` over the leading axis of ``xs``.

    Args:
      step: ``(carry, x_t) -> (carry, out_t)``, one time step.
      init: the initial carry (a pytree).
      xs: a pytree of arrays with a leading time axis ``T``.
      mask: None, or a validated boolean ``(T,)``; False skips that step.
      reverse: process ``t = T-1 .. 0``; outputs stay at their original positions.
      unroll: lax.scan's unroll factor.
      remat: recompute each step in the backward pass instead of storing its
        intermediates (``jax.checkpoint``), trading compute for memory.
      skip_output: ``carry -> out_t`` for skipped steps; default the carry itself.

    Returns:
      ``(final_carry, outs)`` with ``outs`` stacked along time.
    """
    body = jax.checkpoint(step) if remat else step
    if mask is None:
        return lax.scan(body, init, xs, reverse=reverse, unroll=unroll)

    def masked(carry, inputs):
        x, keep = inputs
        return _skip_unless(keep, carry, body(carry, x), skip_output)

    return lax.scan(masked, init, (xs, mask), reverse=reverse, unroll=unroll)


def _contract(weights, inputs):
    """``weights (L, O, I)`` applied to ``inputs (L, I)`` lag by lag: ``(L, O)``."""
    return jnp.einsum("loi,li->lo", weights, inputs)


def weight_tapped_scan(step: Callable, weights, init, xs, mask, unroll, skip_output):
    """The final carry and ``outs`` of ``carry, out = step(project, carry, x_t)`` over time, where the step uses
    ``weights (L, O, I)`` only through one call ``project(P)`` with ``P (L, I)``,
    ``project(P)[l] = weights[l] @ P[l]``; with a hand-written backward pass.

    Autodiff through ``lax.scan`` adds each step's ``∂ℓ/∂weights`` (an outer product) to an
    accumulator inside the backward loop and stores every intermediate of every step. Here
    the forward pass stores only each step's incoming carry and ``P``; the backward loop
    recomputes one step at a time and takes its vector-Jacobian product with the weights
    held constant, reading ``∂ℓ/∂project(P)`` off a zero "tap" added to the product; after
    the loop ``∂ℓ/∂weights = Σ_t ∂ℓ/∂project(P_t) P_t^T`` is one contraction over time.
    Differentiable in ``weights``, ``init`` and ``xs``; ``mask`` and the ``skip_output``
    convention are :func:`scan_steps`'s.

    Returns:
      ``(final_carry, outs)``, as :func:`scan_steps`.
    """
    return _tapped(step, unroll, skip_output, weights, init, xs, mask)


def _tapped_step(step, skip_output, project, carry, x, keep):
    """One step, skipped where ``keep`` is False (as :func:`scan_steps` does)."""
    return _skip_unless(keep, carry, step(project, carry, x), skip_output)


def _tapped_forward(step, unroll, skip_output, weights, init, xs, mask):
    def body(carry, inputs):
        x, keep = inputs
        taken = []

        def project(P):
            taken.append(P)
            return _contract(weights, P)

        new_carry, out = _tapped_step(step, skip_output, project, carry, x, keep)
        return new_carry, (out, carry, taken[0])

    return lax.scan(body, init, (xs, mask), unroll=unroll)


@partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _tapped(step, unroll, skip_output, weights, init, xs, mask):
    final, (outs, _, _) = _tapped_forward(step, unroll, skip_output, weights, init, xs, mask)
    return final, outs


def _tapped_fwd(step, unroll, skip_output, weights, init, xs, mask):
    final, (outs, carries, taken) = _tapped_forward(step, unroll, skip_output, weights, init,
                                                    xs, mask)
    return (final, outs), (weights, carries, taken, xs, mask)


def _tapped_bwd(step, unroll, skip_output, residuals, cotangents):
    weights, carries, taken, xs, mask = residuals
    d_final, d_outs = cotangents
    tap_shape = weights.shape[:2]  # project(P)'s

    def body(d_carry, inputs):
        carry, x, keep, d_out = inputs

        def one(carry, x, tap):
            return _tapped_step(step, skip_output, lambda P: _contract(weights, P) + tap, carry,
                                x, keep)

        _, vjp = jax.vjp(one, carry, x, jnp.zeros(tap_shape, weights.dtype))
        d_carry, d_x, d_tap = vjp((d_carry, d_out))
        return d_carry, (d_x, d_tap)

    d_init, (d_xs, d_taps) = lax.scan(body, d_final, (carries, xs, mask, d_outs), reverse=True,
                                      unroll=unroll)
    return jnp.einsum("tlo,tli->loi", d_taps, taken), d_init, d_xs, None


_tapped.defvjp(_tapped_fwd, _tapped_bwd)
