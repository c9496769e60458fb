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
from itertools import accumulate

import jax
import jax.numpy as jnp
from jax.custom_batching import custom_vmap

__all__ = ["batch_aware", "row_blocks", "join_blocks", "split_like", "time_major"]


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


# XLA's CPU reduction of a (B, N) array over B slows down ~20x from N = 16,384 to 32,768
# (0.23 against 5.4 ms at B = 64, jax 0.10.2), and that is how JAX sums a kernel's per-example
# weight gradients under ``jax.grad`` of a vmapped loss; so a kernel takes a large weight
# matrix as blocks of rows of at most this many entries (one block below it: nothing changes).
BLOCK = 16_384


def row_blocks(W):
    """``W (O, m)`` as a tuple of row blocks of at most ``BLOCK`` entries each."""
    rows = max(1, BLOCK // W.shape[1])
    return tuple(W[i:i + rows] for i in range(0, W.shape[0], rows))


def join_blocks(blocks):
    return blocks[0] if len(blocks) == 1 else jnp.concatenate(blocks)


def split_like(dW, blocks):
    """Per-example ``dW (B, O, m)`` split into ``blocks``' rows: ``(B, rows, m)`` each."""
    ends = list(accumulate(block.shape[0] for block in blocks))[:-1]
    return tuple(jnp.split(dW, ends, axis=1))


def time_major(tree):
    """Every array of ``tree`` with its first two axes swapped: ``(B, T, …)`` and
    ``(T, B, …)`` each into the other (None stays None)."""
    return jax.tree.map(lambda a: jnp.swapaxes(a, 0, 1), tree)
