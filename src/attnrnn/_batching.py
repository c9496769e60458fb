"""Per-example kernels that run once for the whole batch under ``jax.vmap``.

The library's functions are defined on one example and batches come from ``jax.vmap``. For a
hand-written kernel (a ``jax.custom_vjp`` and its two halves) vmap's generic rule batches
every operation separately: the per-example matrix-vector products of the recurrence become
matrix products, but the layouts it picks and the per-example weight-gradient products are
slower than one kernel written for a batch (``docs/performance.md``). So each half
is written once for a batch with a leading axis, and ``jax.custom_batching.custom_vmap``
calls it directly under vmap; an unbatched call is a batch of one.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.custom_batching import custom_vmap

__all__ = ["batch_aware"]


def batch_aware(batched: Callable) -> Callable:
    """``batched(shared, *args)`` as a per-example function ``f(shared, *args)``.

    Args:
      batched: takes ``shared`` (a pytree used as is by every example, the weights) and
        pytrees ``args`` whose arrays all have a leading batch axis; returns a pytree whose
        arrays all have that leading batch axis (per-example results, weight gradients
        included).

    Returns:
      ``f`` with per-example semantics: unbatched it runs ``batched`` on a batch of one;
      under ``jax.vmap`` it runs ``batched`` once on the whole batch (arguments not mapped
      are broadcast). When ``shared`` itself is mapped (an ensemble of weights), vmap falls
      back to its generic rule. Wrap ``f`` in ``jax.custom_vjp`` for reverse mode, as
      ``custom_vmap`` requires.
    """

    def one_example(shared, *args):
        outs = batched(shared, *jax.tree.map(lambda a: a[None], args))
        return jax.tree.map(lambda a: a[0], outs)

    per_example = custom_vmap(one_example)

    @per_example.def_vmap
    def _rule(axis_size, in_batched, shared, *args):
        shared_batched, *args_batched = in_batched
        if any(jax.tree.leaves(shared_batched)):
            axes = jax.tree.map(lambda b: 0 if b else None, tuple(in_batched))
            outs = jax.vmap(one_example, in_axes=axes)(shared, *args)
        else:
            args = jax.tree.map(
                lambda a, b: a if b else jnp.broadcast_to(a, (axis_size, *a.shape)),
                tuple(args), tuple(args_batched))
            outs = batched(shared, *args)
        return outs, jax.tree.map(lambda _: True, outs)

    return per_example
