r"""AttentionRNN(∞)'s hand-written reverse pass where each head holds one channel of the state
and the scores are capped: ``Recurrence.kernel`` of ``attnrnn._scan``, what
``backward="fused"`` runs for such a model (``attnrnn.attention._kernel_applies`` says when).

Two facts make the step elementwise and cheap. With one channel a head, every per-head
quantity is an ``(m,)`` array beside the state. With the scores capped (``|w| ≤ c``), every
term ``e^{w - c}`` lies in ``[e^{-2c}, 1]``, so the sums need no running maximum: they are
taken against the fixed reference ``c`` (the carry's ``max`` holds it), and a state ``i``
steps old weighs ``r^i``, ``r = e^{-λ}``. A step (``E_0 = e^{w_0 - c}`` and ``v_0`` of every
step are formed before the loop):

$$
\begin{aligned}
h[t] &= \frac{E_0 \odot v_0 + r \odot N}{E_0 + r \odot D}, \qquad
[q; k; v] = W h[t], \qquad u = \tanh(s\, q \odot k / c), \quad e = e^{c u - c}, \\
D &\leftarrow r \odot D + e, \qquad N \leftarrow r \odot N + e \odot v.
\end{aligned}
$$

The forward loop stores ``1 / (E_0 + r D)``, ``[q; k; v]``, the term ``e`` and its slope
``e (1 - u²) s`` of each step; the reverse loop carries ``∂ℓ/∂(h, D, N)`` and takes one
product with ``W`` a step, and ``∂ℓ/∂W = Σ_t ∂ℓ/∂[q; k; v]_t h[t]ᵀ`` is one contraction after
it. Written for a batch (``attnrnn._batching.batch_aware``), time-major inside.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jax import lax

from attnrnn._batching import batch_aware, time_major
from attnrnn._cell_kernel import _held

__all__ = ["capped_kernel", "to_kernel_state"]


def _weight(q, k, cap, scale):
    """``(u, e)``: the capped score's ``tanh`` and its term ``e^{c u - c}`` (the score as
    ``attnrnn.attention._score`` forms it)."""
    w = q * k
    u = jnp.tanh((w if scale == 1.0 else w * scale) / cap)
    return u, jnp.exp(cap * u - cap)


def _placed(part, block):
    """``(B, m)`` as block ``block`` of ``(B, 3m)``, zeros elsewhere (joined to zeros: as a
    ``jnp.pad`` it cost as much as the concatenation)."""
    zeros = jnp.zeros_like(part)
    return jnp.concatenate([part if i == block else zeros for i in range(3)], axis=-1)


def _decay(rates, dtype):
    """``e^{-λ}`` per channel, ``(1, m)``: beside a batch's ``(B, m)``."""
    return jnp.exp(-jnp.asarray(rates, dtype))[None]


def _forward(static, W, init, lag0, keep, residuals):
    """``(final, hs, saved)`` over time-major ``lag0 = (E_0, v_0)`` ``(T, B, m)`` each."""
    cap, scale, rates, unroll = static
    decay = _decay(rates, W.dtype)
    W_T = W.T

    def step(carry, inputs):
        (E0, v0), keep_t = inputs
        _, D, N = carry
        inverse = 1 / (E0 + decay * D)
        h = (E0 * v0 + decay * N) * inverse
        pre = h @ W_T
        q, k, v = jnp.split(pre, 3, axis=-1)
        u, e = _weight(q, k, cap, scale)
        new = _held(keep_t, (h, decay * D + e, decay * N + e * v), carry)
        return new, (new[0], (inverse, pre, e, e * (1 - u * u) * scale) if residuals else None)

    final, (hs, saved) = lax.scan(step, init, (lag0, keep), unroll=unroll)
    return final, hs, saved


def _primal(static, W, init, lag0, keep):
    final, hs, _ = _forward(static, W, init, time_major(lag0), time_major(keep), False)
    return final, time_major(hs)


def _primal_and_residuals(static, W, init, lag0, keep):
    lag0, keep = time_major(lag0), time_major(keep)
    final, hs, saved = _forward(static, W, init, lag0, keep, True)
    return (final, time_major(hs)), time_major((hs, lag0, saved))


def _gradients(static, W, keep, residuals, g, d_final):
    """Per example: ``∂ℓ/∂W (B, 3m, m)``, ``∂ℓ/∂init``, ``∂ℓ/∂(E_0, v_0)``."""
    cap, scale, rates, unroll = static
    decay = _decay(rates, W.dtype)
    hs, lag0, saved = time_major(residuals)

    def step(d_carry, inputs):
        g_t, h, (E0, v0), (inverse, pre, e, slope), keep_t = inputs
        d_h, d_D, d_N = d_carry
        q, k, v = jnp.split(pre, 3, axis=-1)
        d_score = (d_D + d_N * v) * slope
        # [d_q; d_k; d_v] as a sum of parts joined to zeros: one concatenation of the three,
        # their arithmetic fused into it, was the step's slowest operation
        # (experiments/realdata/LOG.md). Adding zeros changes no bit.
        d_pre = _placed(d_score * k, 0) + _placed(d_score * q, 1) + _placed(d_N * e, 2)
        d_num = (g_t + d_h + d_pre @ W) * inverse
        new = (jnp.zeros_like(d_h), decay * (d_D - d_num * h), decay * (d_N + d_num))
        d_lag0 = (d_num * (v0 - h), d_num * E0)
        if keep_t is None:
            return new, (d_pre, d_lag0)
        zero = lambda a: jnp.where(keep_t[:, None], a, 0)  # noqa: E731
        return (_held(keep_t, new, (d_h + g_t, d_D, d_N)),
                (zero(d_pre), jax.tree.map(zero, d_lag0)))

    d_init, (d_pre, d_lag0) = lax.scan(step, d_final, (time_major(g), hs, lag0, saved,
                                                       time_major(keep)),
                                       reverse=True, unroll=unroll)
    d_W = jnp.einsum("tbo,tbi->boi", d_pre, hs)
    return d_W, d_init, time_major(d_lag0)


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _loop(static, W, init, lag0, keep):
    return batch_aware(partial(_primal, static))(W, init, lag0, keep)


def _loop_fwd(static, W, init, lag0, keep):
    outs, residuals = batch_aware(partial(_primal_and_residuals, static))(W, init, lag0, keep)
    return outs, (W, keep, residuals)


def _loop_bwd(static, stored, cotangents):
    W, keep, residuals = stored
    d_final, g = cotangents
    d_W, d_init, d_lag0 = batch_aware(partial(_gradients, static))(W, keep, residuals, g,
                                                                   d_final)
    return d_W, d_init, d_lag0, None


_loop.defvjp(_loop_fwd, _loop_bwd)


def capped_kernel(lag0, cap, scale, rates):
    """The kernel ``attnrnn._scan`` runs given ``lag0(p, xs) -> (w_0, v_0)``:
    ``kernel(W, p, init, xs, keep, unroll, chunk) -> (final, hs)``, the carry
    ``(h, D, N)`` of ``to_kernel_state``."""

    def kernel(W, p, init, xs, keep, unroll, chunk):
        w0, v0 = lag0(p, xs)
        return _loop((cap, scale, rates, unroll), W[0], init, (jnp.exp(w0 - cap), v0), keep)

    kernel.has_forward_mode = False
    return kernel


def to_kernel_state(state, cap):
    """The library's carry ``(h, max, D, N)`` as the kernel's ``(h, D, N)``: the sums taken
    against ``cap`` instead of ``max``."""
    h, top, D, N = state
    # e^{max - c} as 1 + expm1: exactly 1 for a carry of this kernel (max = c: the sums pass
    # unchanged), 0 for no past (max = -inf), and its derivative where max carries one.
    rescale = 1 + jnp.expm1(top - cap)
    return h, D * rescale, N * rescale
