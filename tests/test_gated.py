from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import attnrnn as ar
import references
from helpers import assert_tree_allclose


def make(seed=0, n=3, m=5, T=9, dtype=jnp.float64):
    key_p, key_x, key_h = jax.random.split(jax.random.PRNGKey(seed), 3)
    params = ar.gated_rnn_init(key_p, n, m, dtype=dtype)
    xs = jax.random.normal(key_x, (T, n), dtype)
    h0 = jax.random.normal(key_h, (m,), dtype)
    return params, xs, h0


@pytest.mark.parametrize("use_h0", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("mask", [None, "pre", "post", "holes"])
def test_matches_loop_reference(use_h0, reverse, mask):
    params, xs, h0 = make()
    T = xs.shape[0]
    masks = {
        None: None,
        "pre": np.arange(T) >= 3,
        "post": np.arange(T) < 6,
        "holes": np.array([1, 0, 1, 1, 0, 0, 1, 0, 1], bool),
    }
    m = masks[mask]
    h0 = h0 if use_h0 else None
    hs = ar.gated_rnn(params, xs, initial_state=h0, mask=None if m is None else jnp.asarray(m),
                      reverse=reverse)
    np.testing.assert_allclose(hs, references.gated_rnn(params, xs, h0, m, reverse), rtol=1e-12,
                               atol=1e-12)


def test_step_and_unroll_agree():
    params, xs, h0 = make(1)
    hs = ar.gated_rnn(params, xs, initial_state=h0, unroll=4)
    h = h0
    for t in range(xs.shape[0]):
        h = ar.gated_rnn_step(params, h, xs[t])
        np.testing.assert_allclose(hs[t], h, rtol=1e-12)


def test_pre_padding_gives_same_last_state():
    params, xs, _ = make(2)
    padded = jnp.concatenate([jnp.zeros((4, 3)), xs])
    mask = jnp.arange(padded.shape[0]) >= 4
    np.testing.assert_allclose(ar.gated_rnn(params, padded, mask=mask)[-1],
                               ar.gated_rnn(params, xs)[-1], rtol=1e-12)
    hs = ar.gated_rnn(params, padded, mask=mask)
    np.testing.assert_array_equal(hs[:4], 0)


def test_jacobian_equals_jacfwd():
    params, xs, h0 = make(3, n=4, m=6)
    closed = ar.gated_rnn_jacobian(params, h0, xs[0])
    auto = jax.jacfwd(lambda h: ar.gated_rnn_step(params, h, xs[0]))(h0)
    np.testing.assert_allclose(closed, auto, rtol=1e-12, atol=1e-14)


def test_dtypes_follow_inputs():
    params, xs, h0 = make(dtype=jnp.float32)
    assert ar.gated_rnn(params, xs).dtype == jnp.float32
    assert ar.gated_rnn(params, xs.astype(jnp.float64)).dtype == jnp.float64
    assert ar.gated_rnn(params, xs, initial_state=h0.astype(jnp.float64)).dtype == jnp.float64
    assert ar.gated_rnn(params, xs.astype(jnp.bfloat16)).dtype == jnp.float32


def test_init():
    params = ar.gated_rnn_init(jax.random.PRNGKey(0), 7, 16)
    assert [w.shape for w in params] == [(16, 7), (16, 16), (16, 7)]
    np.testing.assert_allclose(params.W_h @ params.W_h.T, np.eye(16), atol=1e-5)
    big = ar.gated_rnn_init(jax.random.PRNGKey(1), 400, 300)
    assert abs(float(jnp.var(big.W_x)) - 1 / 400) < 1e-4
    shifted = ar.gated_rnn_init(jax.random.PRNGKey(1), 400, 300, gate_offset=2.0)
    np.testing.assert_allclose(shifted.W_c - big.W_c, 2.0, rtol=1e-6)
    np.testing.assert_array_equal(shifted.W_x, big.W_x)


def test_under_jit_vmap_grad_and_finite_differences():
    params, xs, h0 = make(4)
    batch = jnp.stack([xs, -xs, 2 * xs])
    masks = jnp.stack([jnp.ones(9, bool), jnp.arange(9) >= 2, jnp.arange(9) < 7])
    run = jax.jit(jax.vmap(lambda x, m: ar.gated_rnn(params, x, initial_state=h0, mask=m,
                                                     reverse=True)))
    out = run(batch, masks)
    np.testing.assert_allclose(out[1], references.gated_rnn(params, -xs, h0, np.asarray(masks[1]),
                                                       True), rtol=1e-12)
    check_grads(lambda p, x, h: ar.gated_rnn(p, x, initial_state=h, mask=masks[1]),
                (params, xs, h0),
                order=1, modes=("rev",))
    jac = jax.jit(jax.vmap(lambda h, x: ar.gated_rnn_jacobian(params, h, x)))(out[0], xs)
    assert jac.shape == (9, 5, 5)
    grad = jax.grad(lambda p: ar.gated_rnn_jacobian(p, h0, xs[0]).sum())(params)
    assert isinstance(grad, ar.GatedRNNParams)
    step = jax.jit(jax.vmap(ar.gated_rnn_step, in_axes=(None, 0, 0)))(params, out[0], xs)
    assert step.shape == (9, 5)
    jax.grad(lambda p: ar.gated_rnn_step(p, h0, xs[0]).sum())(params)
    init = jax.vmap(lambda k: ar.gated_rnn_init(k, 3, 5))(jax.random.split(jax.random.PRNGKey(0), 2))
    assert init.W_h.shape == (2, 5, 5)


def bad_cases():
    params, xs, h0 = make()
    return [
        (lambda: ar.gated_rnn(params, xs[0]), ValueError, "xs must have 2 dimensions"),
        (lambda: ar.gated_rnn(params, xs[:, :2]), ValueError, r"xs must have shape \(9, 3\)"),
        (lambda: ar.gated_rnn(params, xs, initial_state=h0[:3]), ValueError,
         r"initial_state must have shape \(5,\)"),
        (lambda: ar.gated_rnn(params, xs, mask=jnp.ones(4, bool)), ValueError,
         r"mask must have shape \(9,\)"),
        (lambda: ar.gated_rnn(params, xs, mask=jnp.ones(9)), TypeError, "mask must be boolean"),
        (lambda: ar.gated_rnn(params, xs, unroll=0), ValueError, "unroll"),
        (lambda: ar.gated_rnn(params, xs, remat_chunk=0), ValueError, "remat_chunk"),
        (lambda: ar.gated_rnn(params, xs, backward="magic"), ValueError, "backward"),
        (lambda: ar.gated_rnn(params._replace(W_h=params.W_h[:3]), xs), ValueError,
         "params.W_h"),
        (lambda: ar.gated_rnn(params._replace(W_x=params.W_x.T), xs), ValueError, "params.W_x"),
        (lambda: ar.gated_rnn((params.W_c, params.W_h), xs), TypeError, "params"),
        (lambda: ar.gated_rnn(params, xs.astype(jnp.int32)), TypeError, "xs must have a floating"),
        (lambda: ar.gated_rnn_jacobian(params, h0[:2], xs[0]), ValueError, "h_prev"),
        (lambda: ar.gated_rnn_step(params, h0, xs), ValueError, "x must have 1 dimensions"),
        (lambda: ar.gated_rnn_init(jax.random.PRNGKey(0), 0, 3), ValueError, "input_size"),
        (lambda: ar.gated_rnn_init(jax.random.PRNGKey(0), 3, 2.0), TypeError, "hidden_size"),
    ]


@pytest.mark.parametrize("case", range(len(bad_cases())))
def test_bad_input(case):
    call, error, match = bad_cases()[case]
    with pytest.raises(error, match=match):
        call()


def test_bad_input_under_jit():
    params, xs, _ = make()
    with pytest.raises(ValueError, match="mask"):
        jax.jit(lambda x, m: ar.gated_rnn(params, x, mask=m))(xs, jnp.ones(3, bool))
    with pytest.raises(ValueError, match=r"xs must have shape \(9, 3\)"):
        jax.jit(lambda x: ar.gated_rnn(params, x))(xs[:, :1])


def obvious_gated_rnn(params, xs, h0, mask=None, reverse=False):
    """The plain definition: every projection inside a lax.scan step, autodiff for grads."""
    W_c, W_h, W_x = params
    keep = jnp.ones(xs.shape[0], bool) if mask is None else mask

    def step(h, inputs):
        x, k = inputs
        c = jax.nn.sigmoid(W_c @ x + W_h @ h)
        h_new = jnp.where(k, c * h + (1 - c) * (W_x @ x), h)
        return h_new, h_new

    return jax.lax.scan(step, h0, (xs, keep), reverse=reverse)[1]


@pytest.mark.parametrize("backward,remat_chunk,reverse", [
    ("fused", None, False), ("fused", None, True), ("fused", 1, False), ("fused", 4, True),
    ("fused", "sqrt", False), ("fused", 20, True), ("autodiff", None, True),
    ("autodiff", "sqrt", False)])
def test_fast_path_equals_the_plain_definition(backward, remat_chunk, reverse):
    """Values and gradients of the hand-written backward pass (with and without
    rematerialisation) against autodiff of the obvious scan, in float32."""
    params, xs, h0 = make(5, n=6, m=7, T=13, dtype=jnp.float32)
    mask = jnp.asarray(np.random.default_rng(0).random(13) > 0.3)
    weights = jax.random.normal(jax.random.PRNGKey(1), (13, 7))

    def loss(fn, params, xs, h0):
        return jnp.sum(weights * jnp.tanh(fn(params, xs, h0)))

    fast = lambda p, x, h: ar.gated_rnn(p, x, initial_state=h, mask=mask, reverse=reverse,
                                        remat_chunk=remat_chunk, backward=backward)
    plain = lambda p, x, h: obvious_gated_rnn(p, x, h, mask, reverse)
    np.testing.assert_allclose(fast(params, xs, h0), plain(params, xs, h0), rtol=1e-5,
                               atol=1e-6)
    g_fast = jax.jit(jax.grad(lambda *a: loss(fast, *a), (0, 1, 2)))(params, xs, h0)
    g_plain = jax.grad(lambda *a: loss(plain, *a), (0, 1, 2))(params, xs, h0)
    assert_tree_allclose(g_fast, g_plain, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("remat_chunk", [None, 3])
def test_fast_path_under_vmap(remat_chunk):
    """The batched kernel (custom_vmap) against vmap of the autodiff path: a batch of masks
    and initial states, gradients of a vmapped loss and per-example gradients."""
    params, xs, h0 = make(6)
    batch = jnp.stack([xs, 2 * xs, -xs])
    h0s = jnp.stack([h0, -h0, 0 * h0])
    masks = jnp.asarray([[1] * 9, [0, 0, 1, 1, 1, 1, 1, 1, 1], [1, 0, 1, 1, 0, 0, 1, 0, 1]], bool)

    def loss(backward, p, x, h, m):
        hs = ar.gated_rnn(p, x, initial_state=h, mask=m, backward=backward,
                          remat_chunk=remat_chunk)
        return jnp.sum(jnp.sin(hs))

    def batch_loss(backward, p, h0_axis):
        one = lambda x, h, m: loss(backward, p, x, h, m)
        return jnp.sum(jax.vmap(one, (0, h0_axis, 0))(batch, h0s if h0_axis == 0 else h0,
                                                        masks))

    for h0_axis in (0, None):
        np.testing.assert_allclose(
            jax.vmap(lambda x, h, m: ar.gated_rnn(params, x, initial_state=h, mask=m),
                     (0, h0_axis, 0))(
                batch, h0s if h0_axis == 0 else h0, masks),
            np.stack([references.gated_rnn(params, x, h, m) for x, h, m in zip(
                batch, h0s if h0_axis == 0 else [h0] * 3, np.asarray(masks))]), rtol=1e-12)
        fused = jax.grad(lambda p: batch_loss("fused", p, h0_axis))(params)
        expected = jax.grad(lambda p: batch_loss("autodiff", p, h0_axis))(params)
        for a, b in zip(fused, expected):
            np.testing.assert_allclose(a, b, rtol=1e-10)

    per_example = jax.vmap(jax.grad(partial(loss, "fused"), argnums=(0, 1, 2)),
                           (None, 0, 0, 0))(params, batch, h0s, masks)
    expected = jax.vmap(jax.grad(partial(loss, "autodiff"), argnums=(0, 1, 2)),
                        (None, 0, 0, 0))(params, batch, h0s, masks)
    assert all(a.shape[0] == 3 for a in jax.tree.leaves(per_example))  # per example, not summed
    assert_tree_allclose(per_example, expected, rtol=1e-10, atol=1e-14)


def test_fast_path_with_a_batch_of_weights_and_nested_vmap():
    params, xs, h0 = make(8)
    ensemble = jax.tree.map(lambda w: jnp.stack([w, 0.5 * w]), params)
    batch = jnp.stack([xs, -xs, 3 * xs])

    def total(backward, ps):
        run = lambda p, x: ar.gated_rnn(p, x, initial_state=h0, backward=backward)
        nested = jax.vmap(jax.vmap(run, (None, 0)), (0, None))(ps, batch)  # (2, 3, T, m)
        return jnp.sum(jnp.cos(nested))

    np.testing.assert_allclose(total("fused", ensemble), total("autodiff", ensemble),
                               rtol=1e-12)
    assert_tree_allclose(jax.grad(partial(total, "fused"))(ensemble),
                         jax.grad(partial(total, "autodiff"))(ensemble), rtol=1e-10)
