"""The time loop both recurrences share: masking, reverse order, unrolling, rematerialisation.

Written once so the gated RNN and AttentionRNN agree on what a mask means: where
``mask[t]`` is False the step is skipped — the carry passes through unchanged (so nothing
enters an attention history and a finite-k window does not shift) and the step's output is
``skip_output(carry)`` (the carried state, and all-zero attention weights).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax

from attnrnn._checks import as_int

__all__ = ["scan_steps", "check_unroll"]


def check_unroll(unroll) -> int | bool:
    """``unroll`` as lax.scan takes it: a positive int, or True/False."""
    if isinstance(unroll, bool):
        return unroll
    return as_int("unroll", unroll, minimum=1)


def _select(keep, new, old):
    return jax.tree.map(lambda a, b: jnp.where(keep, a, b), new, old)


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
    skip_output = skip_output or (lambda carry: carry)

    def masked(carry, inputs):
        x, keep = inputs
        new_carry, out = body(carry, x)
        return _select(keep, new_carry, carry), _select(keep, out, skip_output(carry))

    return lax.scan(masked, init, (xs, mask), reverse=reverse, unroll=unroll)
