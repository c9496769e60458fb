import jax
import jax.numpy as jnp
import numpy as np

import attnrnn as ar
from attnrnn import analysis


def make(seed=0, n=3, m=4, T=12):
    key_p, key_x = jax.random.split(jax.random.PRNGKey(seed))
    params = ar.gated_rnn_init(key_p, n, m, dtype=jnp.float64)
    return params, jax.random.normal(key_x, (T, n), jnp.float64)


def test_state_gradients_are_total_derivatives():
    params, xs = make()
    h0 = jnp.zeros(4)

    def loss(hs):
        return jnp.sum(jnp.sin(hs) * jnp.arange(1, hs.shape[0] + 1)[:, None])

    grads = jax.jit(lambda xs: analysis.state_gradients(
        lambda h, x: ar.gated_rnn_step(params, h, x), h0, xs, loss))(xs)
    assert grads.shape == (12, 4)
    # ∂ℓ/∂h[t] by finite differences: perturb h[t] and rerun the rest of the sequence.
    for t in (0, 5, 11):
        def loss_from(h_t):
            rest = (ar.gated_rnn(params, xs[t + 1 :], initial_state=h_t) if t < 11
                    else jnp.zeros((0, 4)))
            prefix = ar.gated_rnn(params, xs[: t + 1])[:t]
            return loss(jnp.concatenate([prefix, h_t[None], rest]))
        h_t = ar.gated_rnn(params, xs)[t]
        np.testing.assert_allclose(grads[t], jax.grad(loss_from)(h_t), rtol=1e-10)


def test_jacobian_products_equal_jacfwd_of_the_unrolled_map():
    params, xs = make(1)
    h0 = jax.random.normal(jax.random.PRNGKey(5), (4,), jnp.float64)
    products = analysis.jacobian_products(analysis.gated_rnn_jacobians(params, xs, h0))
    # The fused backward:
    direct = jax.jacrev(lambda h: ar.gated_rnn(params, xs, initial_state=h)[-1])(h0)
    np.testing.assert_allclose(products[-1], direct, rtol=1e-9, atol=1e-12)
    first = jax.jacfwd(lambda h: ar.gated_rnn(params, xs[:3], initial_state=h,
                                              backward="autodiff")[-1])(h0)
    np.testing.assert_allclose(products[2], first, rtol=1e-10, atol=1e-12)


def test_bptt_W_x_matches_autodiff():
    params, xs = make(2, n=5, m=3, T=9)
    weights = jax.random.normal(jax.random.PRNGKey(3), (9, 3), jnp.float64)

    def loss(params):
        return jnp.sum(weights * jnp.tanh(ar.gated_rnn(params, xs)))

    hs = ar.gated_rnn(params, xs)
    direct = weights * (1 - jnp.tanh(hs) ** 2)  # ∂ℓ/∂h[t] through the loss alone
    closed = jax.jit(analysis.gated_bptt_W_x)(params, xs, direct)
    assert closed.shape == (3, 5)
    np.testing.assert_allclose(closed, jax.grad(loss)(params).W_x, rtol=1e-10, atol=1e-13)
    grads = jax.vmap(lambda x: analysis.gated_bptt_W_x(params, x, direct))(jnp.stack([xs, xs]))
    np.testing.assert_allclose(grads[1], closed, rtol=1e-12)
