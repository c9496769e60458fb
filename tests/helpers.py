"""Shared test helpers: trees compared by structure, dtype and values."""

import jax
import numpy as np


def assert_tree_allclose(actual, expected, *, rtol=1e-7, atol=0.0, dtypes=True):
    """``actual`` and ``expected`` have the same tree structure, each leaf the same shape
    (and dtype, unless ``dtypes=False``) and close values. Unlike zipping the leaves, a
    missing or extra leaf fails."""
    actual_leaves, actual_tree = jax.tree.flatten(actual)
    expected_leaves, expected_tree = jax.tree.flatten(expected)
    assert actual_tree == expected_tree, f"tree structures differ: {actual_tree} != {expected_tree}"
    for i, (a, b) in enumerate(zip(actual_leaves, expected_leaves, strict=True)):
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape, f"leaf {i}: shape {a.shape} != {b.shape}"
        if dtypes:
            assert a.dtype == b.dtype, f"leaf {i}: dtype {a.dtype} != {b.dtype}"
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=f"leaf {i}")


def assert_tree_equal(actual, expected):
    """Bitwise: same structure, shapes, dtypes and values."""
    assert_tree_allclose(actual, expected, rtol=0, atol=0)
