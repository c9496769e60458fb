"""The time loop, public: [`run`][attnrnn.loop.run] runs any cell the way the library runs its
own recurrences (the loop itself is ``attnrnn/_scan.py``)."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from attnrnn._checks import check_rank
from attnrnn._scan import _flip, check_loop, outputs, scan_steps

__all__ = ["run"]


def run(cell, params, xs, *, initial_state, mask=None, reverse=False, unroll=1,
        remat_chunk=None, return_state=False, skip_output=None):
    """Runs any cell over the leading (time) axis of ``xs``: the library's time loop, public.

    A cell is written the way Flax writes them, ``cell(params, carry, x) -> (carry, y)``: one
    step, ``x`` one time step of ``xs``, the carry any pytree. ``run`` owns everything around
    the step, with the contract of every recurrence of the library:

    - ``mask`` (boolean ``(T,)``): where False the step is skipped — the carry is held and the
      step's output is ``skip_output(carry)``; pre- and post-padded sequences both work.
    - ``reverse``: the steps run from ``T-1`` to 0; outputs stay at their positions.
    - ``unroll``: ``lax.scan``'s unroll factor. ``remat_chunk`` (an int, or ``"sqrt"``):
      only the carry entering each chunk of that many steps is stored for the backward pass,
      the chunk's steps recomputed when needed.
    - ``return_state``: also return the final carry, so two chunks fed through it equal one
      call.

    The library's recurrences are cells too (``gated_rnn_cell``, ``gru_cell``, ``lstm_cell``,
    ``lstm1997_cell``, ``attention_rnn_cell(k, options)``): ``run`` of one equals its
    convenience (``gru``, …), which runs the same equations with its inputs projected for
    every step at once and, with ``backward="fused"``, a hand-written reverse pass. A cell of
    your own brings its own backward pass by being a ``jax.custom_vjp`` function (its step's
    reverse pass); ``jit``, ``vmap`` (batch by mapping ``run`` over examples) and ``grad``
    work as for any JAX function.

    Args:
      cell: ``cell(params, carry, x) -> (carry, y)``.
      params: the cell's parameters (any pytree), passed to every step.
      xs: an array, or a pytree of arrays, with a leading time axis ``T`` (the same for all).
      initial_state: the carry entering the first step (keyword-only, required: the loop
        does not know the cell's state).
      mask: None, or boolean ``(T,)``.
      reverse, unroll, remat_chunk, return_state: as above.
      skip_output: ``carry -> y``, the output of a skipped step; None: the cell's own
        ``cell.skip_output`` if it has one (the library's cells do), else the carry itself,
        which must then have the structure and shapes of ``y`` (an LSTM's, whose carry is
        ``(h, c)`` and output ``h``, is ``lambda carry: carry[0]``).

    Returns:
      ``ys`` (every step's ``y`` stacked along a leading time axis), or ``(ys, final carry)``
      with ``return_state``.
    """
    if not callable(cell):
        raise TypeError(f"cell must be a function cell(params, carry, x) -> (carry, y), got "
                        f"{type(cell).__name__}")
    if skip_output is None:  # the library's cells bring theirs (the LSTM's repeats h)
        skip_output = getattr(cell, "skip_output", None)
    if skip_output is not None and not callable(skip_output):
        raise TypeError(f"skip_output must be None or a function carry -> y, got "
                        f"{type(skip_output).__name__}")
    leaves = jax.tree.leaves(xs)
    if not leaves:
        raise ValueError("xs must hold at least one array with a leading time axis, got an "
                         "empty pytree")
    lengths = {check_rank("xs", leaf, (1, 2, 3, 4, 5, 6, 7, 8), "(T, ...)")[0]
               for leaf in leaves}
    if len(lengths) > 1:
        raise ValueError(f"every array of xs must have the same leading time axis T, got "
                         f"lengths {sorted(lengths)}")
    T = lengths.pop()
    loop = check_loop(T, mask=mask, reverse=reverse, unroll=unroll, remat_chunk=remat_chunk,
                      backward="autodiff", return_state=return_state)
    if not jax.tree.leaves(initial_state):
        raise TypeError("initial_state must be the carry entering the first step (a pytree "
                        f"of arrays), got {initial_state!r}")
    step = partial(cell, params)
    if skip_output is None:
        _check_carry_is_output(step, initial_state, jax.tree.map(lambda a: a[0], xs))
    keep = loop.mask
    if loop.reverse:  # run forward over the flipped sequence; the outputs flip back
        xs, keep = _flip(xs), None if keep is None else keep[::-1]
    final, ys = scan_steps(step, skip_output, initial_state, xs, keep, loop.unroll,
                           loop.remat_chunk)
    return outputs(loop, _flip(ys) if loop.reverse else ys, final)


def _check_carry_is_output(step, carry, x):
    """Without ``skip_output`` a skipped step outputs its carry: it must look like ``y``."""
    _, y = jax.eval_shape(step, carry, x)
    shapes = lambda tree: jax.tree.map(lambda a: (a.shape, jnp.dtype(a.dtype)), tree)
    if jax.tree.structure(y) != jax.tree.structure(carry) or shapes(y) != shapes(
            jax.eval_shape(lambda c: c, carry)):
        raise TypeError(
            "the cell's output y does not have the carry's structure and shapes, so a skipped "
            "step has no output to repeat: pass skip_output=lambda carry: ... (the LSTM's: "
            "lambda carry: carry[0])")
