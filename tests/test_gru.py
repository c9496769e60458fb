import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attnrnn.gru import GRUParams, gru, gru_init, gru_initial_state
from helpers import assert_tree_allclose


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def reference(params, xs, mask, h):
    """PyTorch's GRU equations, one step at a time in float64."""
    W_x, W_h, b_x, b_h = (np.asarray(w, np.float64) for w in params)
    hs = []
    for t in range(len(xs)):
        if mask[t]:
            x_r, x_z, x_n = np.split(W_x @ np.asarray(xs[t]) + b_x, 3)
            h_r, h_z, h_n = np.split(W_h @ h + b_h, 3)
            r, z = sigmoid(x_r + h_r), sigmoid(x_z + h_z)
            n = np.tanh(x_n + r * h_n)
            h = (1 - z) * n + z * h
        hs.append(h)
    return np.array(hs)


def setup(T=9, n=3, m=5):
    params = gru_init(jax.random.PRNGKey(0), n, m, dtype=jnp.float64)
    xs = jax.random.normal(jax.random.PRNGKey(1), (T, n), jnp.float64)
    return params, xs


def test_gru_matches_loop_reference():
    params, xs = setup()
    mask = np.array([0, 1, 1, 0, 1, 1, 1, 0, 1], bool)
    h0 = np.linspace(-0.5, 0.5, 5)
    hs, h_last = jax.jit(lambda p, x: gru(p, x, mask=jnp.asarray(mask), initial_state=h0,
                                          return_state=True))(params, xs)
    expected = reference(params, xs, mask, h0)
    np.testing.assert_allclose(hs, expected, rtol=1e-12)
    np.testing.assert_allclose(h_last, expected[-1], rtol=1e-12)
    # reverse: the flipped run, outputs in place
    backwards = gru(params, xs, mask=jnp.asarray(mask), reverse=True)
    np.testing.assert_allclose(backwards, reference(params, xs[::-1], mask[::-1],
                                                    np.zeros(5))[::-1], rtol=1e-12)
    assert all(np.all(np.abs(np.asarray(w)) <= 1 / np.sqrt(5)) for w in params)
    np.testing.assert_array_equal(gru_initial_state(params), np.zeros(5))


def test_wide_inputs_projected_inside_the_loop_match_the_reference():
    """From IN_LOOP_FEATURES features on, autodiff projects the inputs step by step inside
    the loop: the same numbers, and the same gradient as the fused pass (inputs hoisted)."""
    from attnrnn._scan import IN_LOOP_FEATURES

    params, xs = setup(T=6, n=IN_LOOP_FEATURES, m=4)
    mask = np.array([1, 0, 1, 1, 0, 1], bool)
    hs = gru(params, xs, mask=jnp.asarray(mask), reverse=True)
    np.testing.assert_allclose(hs, reference(params, xs[::-1], mask[::-1], np.zeros(4))[::-1],
                               rtol=1e-12)
    loss = lambda p, x, backward: jnp.sum(gru(p, x, mask=jnp.asarray(mask),  # noqa: E731
                                              backward=backward) ** 2)
    assert_tree_allclose(jax.grad(loss, (0, 1))(params, xs, "autodiff"),
                         jax.grad(loss, (0, 1))(params, xs, "fused"), rtol=1e-10)


def test_two_chunks_through_the_state_equal_one_call():
    params, xs = setup()
    whole = gru(params, xs)
    first, h = gru(params, xs[:4], return_state=True)
    np.testing.assert_allclose(jnp.concatenate([first, gru(params, xs[4:], initial_state=h)]),
                               whole, rtol=1e-12)


@pytest.mark.parametrize("options", [dict(backward="fused"), dict(remat_chunk=2),
                                     dict(backward="fused", remat_chunk="sqrt", unroll=2),
                                     dict(reverse=True, backward="fused")])
def test_backward_strategies_equal_autodiff(options):
    params, xs = setup()
    mask = jnp.arange(9) % 4 != 1
    h0 = jnp.full((5,), 0.1, jnp.float64)

    def loss(p, h0, options):
        hs = gru(p, xs, mask=mask, initial_state=h0, **options)
        return jnp.sum(jnp.sin(hs))

    reverse = {"reverse": options["reverse"]} if "reverse" in options else {}
    expected = jax.grad(loss, argnums=(0, 1))(params, h0, reverse)
    actual = jax.jit(jax.grad(lambda p, h: loss(p, h, options), argnums=(0, 1)))(params, h0)
    assert_tree_allclose(actual, expected, rtol=1e-10, atol=1e-12)


def test_vmap_and_bad_input():
    params, xs = setup()
    batch = jnp.stack([xs, 2 * xs])
    hs = jax.vmap(lambda x: gru(params, x))(batch)
    np.testing.assert_allclose(hs[1], gru(params, 2 * xs), rtol=1e-12)
    with pytest.raises(ValueError, match=r"xs must have shape \(9, 3\)"):
        gru(params, jnp.ones((9, 4)))
    with pytest.raises(ValueError, match=r"initial_state must have shape \(5,\)"):
        gru(params, xs, initial_state=jnp.ones(4))
    with pytest.raises(ValueError, match=r"params.b_h must have shape \(15,\)"):
        gru(params._replace(b_h=jnp.ones(3)), xs)


def test_gru_matches_flax_gru_cell():
    """Flax's GRUCell is this cell with no hidden-side biases: copied weights give the same
    states to float32 rounding."""
    nnx = pytest.importorskip("flax.nnx")
    cell = nnx.GRUCell(3, 6, rngs=nnx.Rngs(0))
    assert getattr(cell.dense_h, "bias", None) is None
    params = GRUParams(jnp.asarray(cell.dense_i.kernel[...]).T,
                       jnp.asarray(cell.dense_h.kernel[...]).T,
                       jnp.asarray(cell.dense_i.bias[...]), jnp.zeros(18, jnp.float32))
    xs = jax.random.normal(jax.random.PRNGKey(2), (20, 3), jnp.float32)
    h, expected = jnp.zeros(6, jnp.float32), []
    for x in xs:
        h, _ = cell(h, x)
        expected.append(h)
    np.testing.assert_allclose(gru(params, xs), np.array(expected), rtol=2e-6, atol=2e-6)
