import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attnrnn import spectral
from references import SQUARINGS, spectral_bound


def test_the_reference_states_the_library_constant():
    assert spectral.SQUARINGS == SQUARINGS


@pytest.mark.parametrize("shape", [(5, 3), (3, 5), (2, 4, 4), (0, 4, 4), (2, 300, 300)])
def test_spectral_norm_bounds_the_largest_singular_value(shape):
    w = jax.random.normal(jax.random.PRNGKey(0), shape, jnp.float64)
    got = np.asarray(jax.jit(spectral.spectral_norm)(w))
    exact = np.linalg.norm(np.asarray(w), 2, axis=(-2, -1)) if shape[0] else np.zeros(0)
    rank = min(shape[-2:])
    assert got.shape == exact.shape
    assert np.all(got >= exact * (1 - 1e-12))
    assert np.all(got <= exact * rank ** (1 / 4 / 2**spectral.SQUARINGS) * (1 + 1e-12))
    matrices = np.asarray(w).reshape(-1, *shape[-2:])
    np.testing.assert_allclose(got.reshape(-1), [spectral_bound(m) for m in matrices], rtol=1e-10)


def test_exact_for_rank_one_and_orthogonal_matrices():
    u = jnp.arange(1.0, 6.0)[:, None]
    np.testing.assert_allclose(spectral.spectral_norm(u @ u.T), 55.0, rtol=1e-10)
    q, _ = jnp.linalg.qr(jax.random.normal(jax.random.PRNGKey(1), (6, 6), jnp.float64))
    assert 3.0 <= float(spectral.spectral_norm(3.0 * q)) <= 3.0 * 6 ** (1 / 1024) + 1e-12


def test_float32_and_the_zero_matrix():
    w = jax.random.normal(jax.random.PRNGKey(2), (32, 32), jnp.float32) * 1e3
    got = float(spectral.spectral_norm(w))
    exact = float(np.linalg.norm(np.asarray(w, np.float64), 2))
    assert exact * (1 - 1e-5) <= got <= exact * 1.004
    zero = jnp.zeros((4, 4), jnp.float32)
    assert float(spectral.spectral_norm(zero)) < 1e-15
    assert bool(jnp.isfinite(jax.grad(spectral.spectral_norm)(zero)).all())


def test_rescale_to_bound_under_jit_vmap_grad():
    w = jax.random.normal(jax.random.PRNGKey(2), (3, 6, 4), jnp.float64) * jnp.array(
        [0.01, 1.0, 10.0])[:, None, None]
    bounded = jax.jit(spectral.rescale_to_bound, static_argnums=1)(w, 1.5)
    norms = np.linalg.norm(np.asarray(bounded), 2, axis=(-2, -1))
    np.testing.assert_allclose(bounded[0], w[0])  # inside the ball: unchanged
    assert np.all(norms[1:] <= 1.5 * (1 + 1e-12)) and np.all(norms[1:] >= 1.5 / 4 ** (1 / 1024))
    np.testing.assert_allclose(jax.vmap(lambda m: spectral.rescale_to_bound(m, 1.5))(w), bounded)
    grads = jax.grad(lambda w: jnp.sum(spectral.rescale_to_bound(w, 1.5) ** 2))(w)
    assert grads.shape == w.shape and bool(jnp.isfinite(grads).all())
    # Outside the ball the rescaled matrix's size no longer depends on w's length: no
    # radial gradient.
    assert abs(float(jnp.vdot(grads[2], w[2]))) < 1e-9 * float(jnp.vdot(w[2], w[2]))
    q = 3.0 * jnp.eye(4)  # repeated singular values
    assert bool(jnp.isfinite(jax.grad(lambda q: spectral.spectral_norm(q))(q)).all())
