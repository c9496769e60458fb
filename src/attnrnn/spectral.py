"""Spectral norms from matrix products alone: differentiable, cheap, never underestimating.

The bounds of [`attnrnn.AttentionOptions`][attnrnn.bounds.AttentionOptions] rescale a weight
``W`` to ``W / max(1, ν(W) / bound)``. That is a proof only if ``ν(W) ≥ ‖W‖₂``, so an estimate
that can fall short (power iteration from a fixed start) is not used. Nor is an SVD: it is a
library call XLA cannot fuse into the training loop's nested ``lax.scan``s (and slow on
accelerators), where the bound below needs nothing but matrix products.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from attnrnn._checks import check_floating, check_rank

__all__ = ["spectral_norm", "rescale_to_bound", "SQUARINGS"]

SQUARINGS = 8  # ν overestimates ‖W‖₂ by at most rank^(1 / 2^(SQUARINGS + 2)): 1.0068 at 1024


def _frobenius(a):
    # + tiny: a finite derivative at the zero matrix (and never log 0 below).
    return jnp.sqrt(jnp.sum(a * a) + jnp.finfo(a.dtype).tiny)


def _gram_power_bound(w):
    """``ν(W) = ‖(WᵀW)^p‖_F^{1/(2p)}`` with ``p = 2^SQUARINGS``, by repeated squaring.

    With ``σ_1 ≥ σ_2 ≥ …`` the singular values of ``W``,
    ``‖(WᵀW)^p‖_F² = Σ_j σ_j^{4p}`` lies between ``σ_1^{4p}`` and ``r σ_1^{4p}``
    (``r`` the rank), so ``σ_1 ≤ ν(W) ≤ r^{1/(4p)} σ_1``. Each square is divided by its
    Frobenius norm first (the scale kept in logs), so nothing overflows or underflows.
    """
    gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
    log_scale = jnp.zeros((), w.dtype)  # log of what has been divided out of gram^(2^i)
    for _ in range(SQUARINGS):
        size = _frobenius(gram)
        gram = gram / size
        log_scale = 2 * (log_scale + jnp.log(size))
        gram = gram @ gram
    p = 2.0**SQUARINGS
    return jnp.exp((log_scale + jnp.log(_frobenius(gram))) / (2 * p))


def spectral_norm(w):
    """``ν(W) ≥ ‖W‖₂`` (the largest singular value) of a matrix ``(r, c)`` or of each matrix
    of a stack ``(L, r, c)``, within a factor ``min(r, c)^{1/1024}`` of it (1.0034 for a
    32×32 matrix). Costs nine products of ``min(r, c)``-square matrices; differentiable,
    also where singular values repeat (an orthogonal matrix)."""
    check_rank("w", w, (2, 3), "(r, c) or a stack (L, r, c)")
    check_floating("w", w)
    return jax.vmap(_gram_power_bound)(w) if w.ndim == 3 else _gram_power_bound(w)


def rescale_to_bound(w, bound):
    """``W / max(1, ν(W) / bound)`` for a matrix or each matrix of a stack: ``W`` itself well
    inside the ball of spectral radius ``bound``, scaled to ``‖W‖₂ ≤ bound`` outside."""
    scale = jnp.maximum(1.0, spectral_norm(w) / bound)
    return w / scale[..., None, None]
