"""Gradient flow through time: Jacobian products, ``∂ℓ/∂h[t]`` for every ``t``, and the
backpropagation-through-time closed form of the gated RNN's ``∂ℓ/∂W_x``.

The total derivative ``∂ℓ/∂h[t]`` sums every path from ``h[t]`` to the loss: directly (if
the loss reads ``h[t]``) and through every later state. It is the gradient of the loss
with respect to an additive perturbation ``δ_t`` of ``h[t]`` at ``δ = 0``, so one backward
pass gives it for all ``t`` at once ([`state_gradients`][attnrnn.analysis.state_gradients]).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from attnrnn.gated import GatedRNNParams, gated_rnn, gated_rnn_jacobian

__all__ = [
    "state_gradients",
    "gated_rnn_jacobians",
    "jacobian_products",
    "gated_bptt_W_x",
]


def state_gradients(step, h0, xs, loss):
    """``∂ℓ/∂h[t]`` (total derivative) for every ``t``, from one backward pass.

    Args:
      step: ``(h_prev, x) -> h``, one step of a recurrence whose carry is its state
        (e.g. ``lambda h, x: gated_rnn_step(params, h, x)``).
      h0: the initial state ``(m,)``.
      xs: ``(T, n)``.
      loss: ``hs (T, m) -> scalar``.

    Returns:
      ``(T, m)``; row ``t-1`` is ``∂ℓ/∂h[t]``.
    """

    def perturbed_loss(deltas):
        def body(h, inputs):
            x, delta = inputs
            h = step(h, x) + delta
            return h, h

        _, hs = lax.scan(body, h0, (xs, deltas))
        return loss(hs)

    return jax.grad(perturbed_loss)(jnp.zeros((xs.shape[0], h0.shape[0]), h0.dtype))


def _trajectory(params: GatedRNNParams, xs, h0):
    """``h[t-1]`` and ``∂h[t]/∂h[t-1]`` for ``t = 1..T`` along the run from ``h0``."""
    hs = gated_rnn(params, xs, initial_state=h0)
    h0 = jnp.zeros_like(hs[0]) if h0 is None else jnp.asarray(h0, hs.dtype)
    h_prev = jnp.concatenate([h0[None], hs[:-1]])
    return h_prev, jax.vmap(lambda h, x: gated_rnn_jacobian(params, h, x))(h_prev, xs)


def gated_rnn_jacobians(params: GatedRNNParams, xs, h0=None):
    """``∂h[t]/∂h[t-1]`` for ``t = 1..T`` along the trajectory from ``h0``, ``(T, m, m)``."""
    return _trajectory(params, xs, h0)[1]


def jacobian_products(jacobians):
    """Running products ``P_t = J_t J_{t-1} ⋯ J_1 = ∂h[t]/∂h[0]`` of ``(T, m, m)``
    Jacobians, ``(T, m, m)``; their norms show vanishing or exploding gradients."""
    eye = jnp.eye(jacobians.shape[-1], dtype=jacobians.dtype)

    def body(product, jac):
        product = jac @ product
        return product, product

    return lax.scan(body, eye, jacobians)[1]


def gated_bptt_W_x(params: GatedRNNParams, xs, direct, h0=None):
    """``∂ℓ/∂W_x`` of the gated RNN by backpropagation through time, in closed form.

    With ``g_t = ∂ℓ/∂h[t]`` through the loss alone (``direct``), the total derivative obeys
    a backward recurrence that mirrors the forward one (``h[t]`` from ``h[t-1]``)::

        δ_T = g_T,    δ_t = g_t + (∂h[t+1]/∂h[t])^T δ_{t+1}
        ∂ℓ/∂W_x = Σ_t ((1 - c[t]) ⊙ δ_t) x[t]^T                   (m × n, the shape of W_x)

    since ``W_x`` enters ``h[t]`` only through ``(1 - c[t]) ⊙ W_x x[t]``.

    Args:
      params: [`GatedRNNParams`][attnrnn.gated.GatedRNNParams].
      xs: ``(T, n)``.
      direct: ``(T, m)``, ``∂ℓ/∂h[t]`` counting only the loss's direct use of each state.
      h0: the initial state, zeros by default.

    Returns:
      ``(m, n)``.
    """
    h_prev, jacobians = _trajectory(params, xs, h0)
    gates = jax.nn.sigmoid(xs @ params.W_c.T + h_prev @ params.W_h.T)

    def back(delta_next, inputs):
        g, jac_next = inputs
        delta = g + jac_next.T @ delta_next
        return delta, delta

    # δ_t needs J_{t+1}; the last step has none (a zero Jacobian closes the recursion).
    next_jacobians = jnp.concatenate([jacobians[1:], jnp.zeros_like(jacobians[:1])])
    _, deltas = lax.scan(back, jnp.zeros_like(h_prev[0]), (direct, next_jacobians), reverse=True)
    return ((1 - gates) * deltas).T @ xs
