r"""The gated RNN (homework 1.2).

With ``x[t] ∈ R^n``, ``h[t] ∈ R^m`` and ``h[0] = 0`` unless given:

$$
\begin{aligned}
c[t] &= \sigma(W_c\, x[t] + W_h\, h[t-1]), &
  W_c &\in \mathbb{R}^{m \times n},\ W_h \in \mathbb{R}^{m \times m}, \\
h[t] &= c[t] \odot h[t-1] + (1 - c[t]) \odot W_x\, x[t], &
  W_x &\in \mathbb{R}^{m \times n}.
\end{aligned}
$$

The gate ``c[t]`` interpolates between keeping the old state and writing the projected
input, so every state is a convex combination of past ``W_x x`` and ``h[0]``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from attnrnn import _scan
from attnrnn._checks import as_int, check_floating, check_rank, check_shape, initialiser
from attnrnn._gated_kernel import gate_update, gated_kernel, gated_step

__all__ = [
    "GatedRNNParams",
    "gated_rnn_init",
    "gated_rnn_step",
    "gated_rnn_cell",
    "gated_rnn",
    "gated_rnn_initial_state",
    "gated_rnn_jacobian",
]


class GatedRNNParams(NamedTuple):
    """Gated RNN weights: ``W_c (m, n)``, ``W_h (m, m)``, ``W_x (m, n)``."""

    W_c: jax.Array
    W_h: jax.Array
    W_x: jax.Array


@initialiser
def gated_rnn_init(key, input_size, hidden_size, *, gate_offset=0.0,
                   dtype=jnp.float32) -> GatedRNNParams:
    """Initial gated-RNN weights.

    ``W_c`` and ``W_x`` are LeCun-normal (``N(0, 1/n)``), so ``W_c x`` and ``W_x x`` start
    with unit variance for unit-variance inputs; ``W_h`` is a random orthogonal matrix, so
    the recurrent contribution to the gate neither shrinks nor grows the state's norm.

    The model has no bias, but ``gate_offset`` is added to every entry of ``W_c``: for
    one-hot inputs (each ``x`` sums to 1) it is exactly a gate bias, so the gate starts near
    ``σ(gate_offset)`` — with 2.0, each step keeps 88% of the state, a long memory from the
    first update (the role of the LSTM's forget-gate bias; the training application starts
    its gate bias at 2, and ``--model gated,offset=0`` trains without it).

    Args:
      key: a ``jax.random`` key.
      input_size: ``n``.
      hidden_size: ``m``.
      gate_offset: added to ``W_c`` (default 0: the plain initialisation).
      dtype: a floating dtype for every weight.

    Returns:
      [`GatedRNNParams`][attnrnn.gated.GatedRNNParams].
    """
    n = as_int("input_size", input_size, minimum=1)
    m = as_int("hidden_size", hidden_size, minimum=1)
    k_c, k_h, k_x = jax.random.split(key, 3)
    lecun = jax.nn.initializers.lecun_normal(in_axis=1, out_axis=0)
    return GatedRNNParams(
        W_c=lecun(k_c, (m, n), dtype) + jnp.asarray(gate_offset, dtype),
        W_h=jax.nn.initializers.orthogonal()(k_h, (m, m), dtype),
        W_x=lecun(k_x, (m, n), dtype),
    )


def _check_params(params) -> tuple[int, int]:
    """Validates the three weights against each other; returns ``(n, m)``."""
    if not isinstance(params, tuple) or len(params) != 3:
        raise TypeError(
            f"params must be GatedRNNParams(W_c, W_h, W_x), got {type(params).__name__}"
        )
    W_c, W_h, W_x = params
    m, n = check_rank("params.W_c", W_c, 2, "(m, n)")
    check_shape("params.W_h", W_h, (m, m), "(m, m) with m from W_c")
    check_shape("params.W_x", W_x, (m, n), "(m, n) like W_c")
    for name, w in zip(("W_c", "W_h", "W_x"), params):
        check_floating(f"params.{name}", w)
    return n, m


def _check_x(name, x, n, rank, what):
    shape = check_rank(name, x, rank, what)
    if shape[-1] != n:
        raise ValueError(
            f"{name} must have {n} features (the input_size of params.W_c), got shape {shape}"
        )
    check_floating(name, x)
    return shape


def _one_step_inputs(params, h_prev, x):
    """Validates one step's inputs and casts them to their common dtype."""
    n, m = _check_params(params)
    _check_x("x", x, n, 1, "(n,)")
    check_shape("h_prev", h_prev, (m,), "(m,)")
    check_floating("h_prev", h_prev)
    dtype = jnp.result_type(*params, h_prev, x)
    weights = GatedRNNParams(*(jnp.asarray(w, dtype) for w in params))
    return weights, jnp.asarray(h_prev, dtype), jnp.asarray(x, dtype)


def gated_rnn_step(params: GatedRNNParams, h_prev, x):
    """One step ``h[t] = c ⊙ h[t-1] + (1 - c) ⊙ W_x x[t]`` with ``c = σ(W_c x[t] + W_h h[t-1])``.

    Args:
      params: [`GatedRNNParams`][attnrnn.gated.GatedRNNParams].
      h_prev: ``h[t-1] (m,)``.
      x: ``x[t] (n,)``.

    Returns:
      ``h[t] (m,)``.
    """
    (W_c, W_h, W_x), h_prev, x = _one_step_inputs(params, h_prev, x)
    return gated_step(W_h, h_prev, W_c @ x, W_x @ x)[0]


def gated_rnn_cell(params: GatedRNNParams, h_prev, x):
    """[`gated_rnn_step`][attnrnn.gated.gated_rnn_step] as a cell of
    [`attnrnn.run`][attnrnn.loop.run]: ``(h[t-1], x[t]) -> (h[t], h[t])``."""
    h = gated_rnn_step(params, h_prev, x)
    return h, h


def _project_inputs(inputs, xs):
    W_c, W_x = inputs
    return xs @ W_c.T, xs @ W_x.T


def _update(h_prev, z, context, WP):
    h, _ = gate_update(h_prev, *z, WP[0])
    return h, h


# The gated RNN as the time loop sees it: W_h multiplies the previous state.
_RECURRENCE = _scan.Recurrence(_project_inputs, read=lambda h, z: (h[None], None),
                               update=_update, kernel=gated_kernel)


def gated_rnn(params: GatedRNNParams, xs, *, initial_state=None, mask=None, reverse=False,
              unroll=1, remat_chunk=None, backward="fused", return_state=False):
    """Runs the gated RNN over a sequence.

    The input projections ``W_c x[t]`` and ``W_x x[t]`` do not depend on the state, so they
    are computed for every ``t`` in one matrix product before the loop; the loop itself only
    does ``W_h h[t-1]`` and the elementwise gate. The default backward pass is hand-written
    (``attnrnn._gated_kernel``): it carries only ``∂ℓ/∂h`` through time and forms the weight
    gradients as products after the loop; under ``jax.vmap`` the loop runs once for the
    batch, ``(B, m) @ (m, m)`` per step. Two chunks of a sequence fed through the returned
    state equal one call.

    The keywords are those of every recurrence of the library (``attnrnn._scan``, the one
    time loop): ``initial_state``, ``mask``, ``reverse``, ``unroll``, ``remat_chunk``,
    ``backward``, ``return_state``.

    Args:
      params: [`GatedRNNParams`][attnrnn.gated.GatedRNNParams].
      xs: ``(T, n)``.
      initial_state: the state before the first step, ``(m,)``; default
        [`gated_rnn_initial_state`][attnrnn.gated.gated_rnn_initial_state] (zeros of the
        computation dtype). Gradients flow into it.
      mask: boolean ``(T,)``; where False the step is skipped and its output repeats the
        carried state (pre- and post-padded batches both work).
      reverse: run from ``t = T`` down to 1; ``hs`` stays in original order.
      unroll: lax.scan unroll factor (a positive int or bool); 1 by default (the measured
        trade-offs per machine are in ``docs/performance.md``).
      remat_chunk: None, an int, or ``"sqrt"`` (``⌈√T⌉``): keep only every ``remat_chunk``-th
        state for the backward pass and recompute the rest, so the memory it needs grows
        with ``T / remat_chunk + remat_chunk`` instead of ``T``.
      backward: ``"fused"`` (the default here: the hand-written reverse pass, the fastest
        measured for this cell; reverse mode only, as any ``jax.custom_vjp``) or
        ``"autodiff"`` (JAX differentiates the scan: forward mode, ``jacfwd`` and higher
        orders work).
      return_state: also return the final state (the state after the last step processed:
        ``h[T]``, or ``h[1]`` with ``reverse``).

    Returns:
      ``hs (T, m)``, ``hs[t-1] = h[t]``; with ``return_state``, ``(hs, final state (m,))``.
    """
    n, m = _check_params(params)
    T = _scan.check_sequence(xs, n)
    loop = _scan.check_loop(T, mask=mask, reverse=reverse, unroll=unroll,
                            remat_chunk=remat_chunk, backward=backward,
                            return_state=return_state)
    dtype, h0 = _scan.initial_state(initial_state, _scan.state_shapes((m,)),
                                    "(m,), the hidden size of params", *params, xs)
    W_c, W_h, W_x = (jnp.asarray(w, dtype) for w in params)
    final, hs = _scan.run_recurrence(_RECURRENCE, W_h[None], (W_c, W_x), h0,
                                     jnp.asarray(xs, dtype), **loop.run_options())
    return _scan.outputs(loop, hs, final)


def gated_rnn_initial_state(params: GatedRNNParams, dtype=None):
    """The zero state ``h[0] (m,)`` (in the parameters' dtype unless ``dtype``)."""
    _, m = _check_params(params)
    return jnp.zeros((m,), dtype or jnp.result_type(*params))


def gated_rnn_jacobian(params: GatedRNNParams, h_prev, x):
    """Closed-form ``∂h[t]/∂h[t-1]``::

        ∂h[t]/∂h[t-1] = diag(c[t]) + diag((h[t-1] - W_x x[t]) ⊙ c[t] ⊙ (1 - c[t])) W_h

    The first term is the direct path through ``c ⊙ h[t-1]``; the second is the path
    through the gate, which is where ``W_h`` (and so exploding products) enters.

    Args:
      params: [`GatedRNNParams`][attnrnn.gated.GatedRNNParams].
      h_prev: ``h[t-1] (m,)``.
      x: ``x[t] (n,)``.

    Returns:
      ``(m, m)``, row ``i`` holding ``∂h_i[t]/∂h[t-1]``.
    """
    (W_c, W_h, W_x), h_prev, x = _one_step_inputs(params, h_prev, x)
    _, c = gated_step(W_h, h_prev, W_c @ x, W_x @ x)
    gate_path = (h_prev - W_x @ x) * c * (1 - c)
    return jnp.diag(c) + gate_path[:, None] * W_h
