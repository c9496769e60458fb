"""Float64 NumPy references shared by several test modules (written from the docstrings'
equations, independently of the library's code)."""

import numpy as np

SQUARINGS = 8  # attnrnn.spectral.SQUARINGS, restated: the tests check the documented ν


def spectral_bound(w):
    """ν(W) = ‖(WᵀW)^p‖_F^{1/(2p)}, p = 2^SQUARINGS, by matrix_power on the Gram matrix
    normalised by its exact spectral norm (np.linalg.norm(·, 2))."""
    w = np.asarray(w, np.float64)
    gram = w.T @ w
    top = np.linalg.norm(gram, 2)
    if top == 0:
        return 0.0
    p = 2**SQUARINGS
    return np.sqrt(top) * np.linalg.norm(np.linalg.matrix_power(gram / top, p)) ** (1 / (2 * p))


def rescale_to_bound(stack, bound):
    """Each matrix of ``stack`` as ``W / max(1, ν(W) / bound)``."""
    return np.stack([w / max(1.0, spectral_bound(w) / bound) for w in np.asarray(stack)])
