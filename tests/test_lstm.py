import jax
import jax.numpy as jnp
import numpy as np

from attnrnn._scan import IN_LOOP_FEATURES
from attnrnn.lstm import lstm, lstm_init
from helpers import assert_tree_allclose


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def test_lstm_matches_loop_reference_with_mask():
    params = lstm_init(jax.random.PRNGKey(0), 3, 4, dtype=jnp.float64)
    xs = jax.random.normal(jax.random.PRNGKey(1), (7, 3), jnp.float64)
    mask = np.array([0, 1, 1, 0, 1, 1, 1], bool)
    W_x, W_h, b = (np.asarray(w) for w in params)
    h, c = np.zeros(4), np.zeros(4)
    expected = []
    for t in range(7):
        if mask[t]:
            z = W_x @ np.asarray(xs[t]) + W_h @ h + b
            i, f, g, o = np.split(z, 4)
            c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
            h = sigmoid(o) * np.tanh(c)
        expected.append(h)
    hs = jax.jit(lambda p, x: lstm(p, x, mask=jnp.asarray(mask)))(params, xs)
    np.testing.assert_allclose(hs, np.array(expected), rtol=1e-12)
    assert np.all(np.abs(params.b[4:8] - 1) <= 0.5)  # forget gate starts biased open
    assert np.all(np.abs(np.delete(params.b, np.s_[4:8])) <= 0.5)
    grads = jax.grad(lambda p: jnp.sum(jax.vmap(lambda x: lstm(p, x))(xs[None])))(params)
    assert all(bool(jnp.isfinite(g).all()) for g in grads)


def test_wide_inputs_projected_inside_the_loop_match_the_hoisted_projection():
    """From IN_LOOP_FEATURES features on, autodiff projects the inputs step by step inside
    the loop: values and gradients equal the fused pass's (inputs hoisted before it)."""
    params = lstm_init(jax.random.PRNGKey(0), IN_LOOP_FEATURES, 4, dtype=jnp.float64)
    xs = jax.random.normal(jax.random.PRNGKey(1), (6, IN_LOOP_FEATURES), jnp.float64)
    mask = jnp.asarray(np.array([1, 1, 0, 1, 0, 1], bool))
    run = lambda p, x, backward: lstm(p, x, mask=mask, backward=backward)  # noqa: E731
    assert_tree_allclose(run(params, xs, "autodiff"), run(params, xs, "fused"), rtol=1e-12)
    loss = lambda p, x, backward: jnp.sum(run(p, x, backward) ** 2)  # noqa: E731
    assert_tree_allclose(jax.grad(loss, (0, 1))(params, xs, "autodiff"),
                         jax.grad(loss, (0, 1))(params, xs, "fused"), rtol=1e-10)
