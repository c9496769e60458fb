import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attnrnn.lstm1997 import LSTM1997Params, lstm1997, lstm1997_init


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def reference(params, xs, mask, blocks=2, cells=2, g=lambda z: 4 * sigmoid(z) - 2,
              h=lambda s: 2 * sigmoid(s) - 1):
    """Unit by unit, as the paper describes the network (float64 loops), with its
    squashings ``g`` and ``h``."""
    W_c, b_c, W_in, b_in, W_out, b_out = (np.asarray(w, np.float64) for w in params)
    s = np.zeros(blocks * cells)
    y_c, y_in, y_out = np.zeros(blocks * cells), np.zeros(blocks), np.zeros(blocks)
    out = []
    for x, keep in zip(np.asarray(xs, np.float64), mask):
        if keep:
            u = np.concatenate([x, y_c, y_in, y_out])
            new_in = np.array([sigmoid(W_in[j] @ u + b_in[j]) for j in range(blocks)])
            new_out = np.array([sigmoid(W_out[j] @ u + b_out[j]) for j in range(blocks)])
            for c in range(blocks * cells):
                j = c // cells
                s[c] = s[c] + new_in[j] * g(W_c[c] @ u + b_c[c])
            y_in, y_out = new_in, new_out
            y_c = np.array([y_out[c // cells] * h(s[c]) for c in range(blocks * cells)])
        out.append(y_c.copy())
    return np.array(out)


@pytest.mark.parametrize("n,blocks,cells", [(8, 2, 2), (2, 2, 2), (3, 3, 1)])
def test_matches_the_unit_by_unit_reference(n, blocks, cells):
    params = lstm1997_init(jax.random.PRNGKey(0), n, blocks=blocks, cells=cells,
                           input_gate_bias=[-1.0 * (j + 1) for j in range(blocks)],
                           scale=1.0, dtype=jnp.float64)
    xs = jax.random.normal(jax.random.PRNGKey(1), (9, n), jnp.float64)
    mask = np.array([1, 1, 0, 1, 1, 1, 0, 0, 1], bool)
    got = jax.jit(lambda p, x, m: lstm1997(p, x, mask=m))(params, xs, jnp.asarray(mask))
    np.testing.assert_allclose(got, reference(params, xs, mask, blocks, cells), rtol=1e-12,
                               atol=1e-14)
    np.testing.assert_allclose(lstm1997(params, xs[::-1], reverse=True)[::-1],
                               reference(params, xs, np.ones(9, bool), blocks, cells),
                               rtol=1e-12, atol=1e-14)


def test_other_squashings():
    """``cell_input`` and ``cell_output`` replace the paper's ``g`` and ``h``."""
    params = lstm1997_init(jax.random.PRNGKey(0), 3, scale=1.0, dtype=jnp.float64)
    xs = jax.random.normal(jax.random.PRNGKey(1), (6, 3), jnp.float64)
    got = jax.jit(lambda p, x: lstm1997(p, x, cell_input=jnp.tanh, cell_output=lambda s: s))(
        params, xs)
    np.testing.assert_allclose(got, reference(params, xs, np.ones(6, bool), g=np.tanh,
                                              h=lambda s: s), rtol=1e-12, atol=1e-14)
    with pytest.raises(TypeError, match="cell_input must be a function"):
        lstm1997(params, xs, cell_input=2.0)


def test_initialisation_and_weight_count():
    p = lstm1997_init(jax.random.PRNGKey(0), 8)
    assert sum(w.size for w in p) == 136  # + 4 outputs x (4 cells + bias) = 156
    assert sum(w.size for w in lstm1997_init(jax.random.PRNGKey(0), 2,
                                             input_gate_bias=(-3, -6))) == 88  # + 5 = 93
    np.testing.assert_array_equal(p.b_in, [-2.0, -4.0])
    others = np.concatenate([np.ravel(w) for name, w in zip(p._fields, p) if name != "b_in"])
    assert np.abs(others).max() <= 0.1 and others.std() > 0.04  # U[-0.1, 0.1]: std 0.058


def test_jit_vmap_grad_and_the_carousel():
    params = lstm1997_init(jax.random.PRNGKey(2), 4, dtype=jnp.float64)
    xs = jax.random.normal(jax.random.PRNGKey(3), (3, 50, 4), jnp.float64)
    ys = jax.jit(jax.vmap(lambda x: lstm1997(params, x)))(xs)
    assert ys.shape == (3, 50, 4) and bool((jnp.abs(ys) <= 1).all())
    grads = jax.grad(lambda p: jnp.sum(jax.vmap(lambda x: lstm1997(p, x))(xs)[:, -1]))(params)
    assert isinstance(grads, LSTM1997Params)
    assert all(bool(jnp.isfinite(g).all()) for g in grads)
    # The input at t = 1 still reaches the last output through the cell state (no forget
    # gate): its gradient does not vanish over 50 steps.
    dx = jax.grad(lambda x: jnp.sum(lstm1997(params, x)[-1]))(xs[0])
    assert float(jnp.abs(dx[0]).max()) > 1e-4


@pytest.mark.parametrize("call,error,match", [
    (lambda p, x: lstm1997(p, x[:, :3]), ValueError, "xs must have shape"),
    (lambda p, x: lstm1997(p[:5], x), TypeError, "params must be LSTM1997Params"),
    (lambda p, x: lstm1997(p._replace(b_c=p.b_c[:3]), x), ValueError, "params.b_c"),
    (lambda p, x: lstm1997(p, x, mask=jnp.ones(3, bool)), ValueError, "mask"),
    (lambda p, x: lstm1997(p, x.astype(jnp.int32)), TypeError, "xs"),
    (lambda p, x: lstm1997_init(jax.random.PRNGKey(0), 8, input_gate_bias=(-2,)), ValueError,
     "input_gate_bias"),
])
def test_bad_input(call, error, match):
    params = lstm1997_init(jax.random.PRNGKey(0), 8)
    with pytest.raises(error, match=match):
        call(params, jnp.ones((5, 8)))


def test_truncated_gradient_flows_only_along_the_cell_states():
    params = lstm1997_init(jax.random.PRNGKey(4), 3, scale=1.0, dtype=jnp.float64)
    xs = jax.random.normal(jax.random.PRNGKey(5), (30, 3), jnp.float64)
    full, cut = (lstm1997(params, xs, truncated=t) for t in (False, True))
    np.testing.assert_array_equal(full, cut)  # the same forward pass

    def last(x, truncated):
        return jnp.sum(lstm1997(params, x, truncated=truncated)[-1])

    d_full, d_cut = (jax.grad(last)(xs, t) for t in (False, True))
    assert not np.allclose(d_full, d_cut)
    assert float(jnp.abs(d_cut[0]).max()) > 0  # the first input still reaches the end (CEC)
    # The truncated gradient is autodiff of the same function with y[t-1] held constant in
    # the net inputs: write that out and compare.
    W = jnp.concatenate([params.W_c, params.W_in, params.W_out])
    b = jnp.concatenate([params.b_c, params.b_in, params.b_out])
    def manual(x):
        s, y = jnp.zeros(4), jnp.zeros(8)
        for t in range(30):
            net = W[:, :3] @ x[t] + b + W[:, 3:] @ jax.lax.stop_gradient(y)
            y_in, y_out = jax.nn.sigmoid(net[4:6]), jax.nn.sigmoid(net[6:])
            s = s + jnp.repeat(y_in, 2) * (4 * jax.nn.sigmoid(net[:4]) - 2)
            y_c = jnp.repeat(y_out, 2) * (2 * jax.nn.sigmoid(s) - 1)
            y = jnp.concatenate([y_c, y_in, y_out])
        return jnp.sum(y_c)

    np.testing.assert_allclose(d_cut, jax.grad(manual)(xs), rtol=1e-10, atol=1e-14)
