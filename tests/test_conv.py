import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads

import attnrnn as ar


def reference_conv(x, w, stride, pads, dilation, groups):
    """Plain-loop float64 cross-correlation, written from the formula."""
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    nd = x.ndim - 1
    xp = np.pad(x, [(0, 0)] + [tuple(p) for p in pads])
    F, cg = w.shape[:2]
    kernel = w.shape[2:]
    out = [
        (xp.shape[1 + i] - (dilation[i] * (kernel[i] - 1) + 1)) // stride[i] + 1
        for i in range(nd)
    ]
    y = np.zeros((F, *out))
    fg = F // groups
    for f in range(F):
        group = f // fg
        for r in itertools.product(*(range(o) for o in out)):
            total = 0.0
            for c in range(cg):
                for kk in itertools.product(*(range(k) for k in kernel)):
                    idx = tuple(r[i] * stride[i] + kk[i] * dilation[i] for i in range(nd))
                    total += xp[(group * cg + c, *idx)] * w[(f, c, *kk)]
            y[(f, *r)] = total
    return y


def random_case(rng, nd):
    groups = int(rng.integers(1, 3))
    C, F = groups * int(rng.integers(1, 3)), groups * int(rng.integers(1, 3))
    kernel = tuple(int(v) for v in rng.integers(1, 4, nd))
    stride = tuple(int(v) for v in rng.integers(1, 4, nd))
    dilation = tuple(int(v) for v in rng.integers(1, 3, nd))
    pads = tuple((int(a), int(b)) for a, b in rng.integers(0, 3, (nd, 2)))
    spatial = tuple(
        int(rng.integers(d * (k - 1) + 1, d * (k - 1) + 8)) for k, d in zip(kernel, dilation)
    )
    x = rng.normal(size=(C, *spatial))
    w = rng.normal(size=(F, C // groups, *kernel))
    return x, w, dict(stride=stride, padding=pads, dilation=dilation, groups=groups)


@pytest.mark.parametrize("nd", [1, 2])
@pytest.mark.parametrize("seed", range(6))
def test_conv_matches_loop_reference(nd, seed):
    x, w, kw = random_case(np.random.default_rng(seed * 10 + nd), nd)
    y = ar.conv(jnp.asarray(x), jnp.asarray(w), **kw)
    ref = reference_conv(x, w, kw["stride"], kw["padding"], kw["dilation"], kw["groups"])
    assert y.dtype == jnp.float64
    np.testing.assert_allclose(y, ref, rtol=1e-10, atol=1e-10)


def test_padding_forms_agree():
    rng = np.random.default_rng(1)
    x, w = jnp.asarray(rng.normal(size=(2, 9, 8))), jnp.asarray(rng.normal(size=(3, 2, 3, 2)))
    a = ar.conv(x, w, padding=1)
    b = ar.conv(x, w, padding=(1, 1))
    c = ar.conv(x, w, padding=((1, 1), (1, 1)))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    np.testing.assert_array_equal(ar.conv(x, w, padding="VALID"), ar.conv(x, w))


@pytest.mark.parametrize("stride", [1, 2, 3])
def test_same_padding_matches_lax(stride):
    rng = np.random.default_rng(stride)
    x, w = rng.normal(size=(2, 10, 7)), rng.normal(size=(4, 2, 3, 4))
    y = ar.conv(jnp.asarray(x), jnp.asarray(w), padding="SAME", stride=stride, dilation=(1, 2))
    assert y.shape[1:] == (-(-10 // stride), -(-7 // stride))
    expected = jax.lax.conv_general_dilated(
        x[None], w, (stride, stride), "SAME", rhs_dilation=(1, 2)
    )[0]
    np.testing.assert_allclose(y, expected, rtol=1e-12)
    assert ar.conv_output_shape(x.shape, (3, 4), filters=4, stride=stride, padding="SAME",
                                dilation=(1, 2)) == y.shape


def test_conv_3d_matches_lax():
    rng = np.random.default_rng(3)
    x, w = rng.normal(size=(4, 6, 7, 5)), rng.normal(size=(6, 2, 2, 3, 2))
    y = ar.conv(jnp.asarray(x), jnp.asarray(w), stride=(1, 2, 1), padding=1, groups=2)
    expected = jax.lax.conv_general_dilated(
        x[None], w, (1, 2, 1), ((1, 1),) * 3, feature_group_count=2
    )[0]
    np.testing.assert_allclose(y, expected, rtol=1e-12)


def test_homework_output_shape():
    assert ar.conv_output_shape((1, 21, 12), (4, 5), stride=4) == (1, 5, 2)
    assert ar.conv_output_shape((21, 12), (4, 5), stride=4) == (5, 2)
    assert ar.conv(jnp.ones((1, 21, 12)), jnp.ones((1, 1, 4, 5)), stride=4).shape == (1, 5, 2)
    assert ar.conv_output_shape((3, 20, 20), 3, filters=8, padding=((1, 2), (0, 0)),
                                dilation=2) == (8, 19, 16)


def test_homework_1d_example():
    """x ∈ R^{5×7}, W ∈ R^{1×5×3}, stride 2: f_W(x)[r] = Σ_c Σ_k x[c, k + 2(r-1)] W[1, c, k]."""
    rng = np.random.default_rng(0)
    x, w = rng.normal(size=(5, 7)), rng.normal(size=(1, 5, 3))
    y = ar.conv(jnp.asarray(x), jnp.asarray(w), stride=2)
    assert y.shape == (1, 3)
    for r in range(1, 4):
        expected = sum(x[c, k + 2 * (r - 1)] * w[0, c, k] for c in range(5) for k in range(3))
        np.testing.assert_allclose(y[0, r - 1], expected, rtol=1e-12)
    g = rng.normal(size=(1, 3))
    dw = ar.conv_weight_grad(jnp.asarray(x), jnp.asarray(g), 3, stride=2)
    assert dw.shape == w.shape
    expected = np.array(
        [[[sum(g[0, r] * x[c, k + 2 * r] for r in range(3)) for k in range(3)] for c in range(5)]]
    )
    np.testing.assert_allclose(dw, expected, rtol=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    nd=st.integers(1, 3),
    data=st.data(),
)
def test_output_shape_equals_conv_shape(nd, data):
    size = data.draw(st.lists(st.integers(1, 9), min_size=nd, max_size=nd))
    kernel = data.draw(st.lists(st.integers(1, 4), min_size=nd, max_size=nd))
    stride = data.draw(st.lists(st.integers(1, 4), min_size=nd, max_size=nd))
    dilation = data.draw(st.lists(st.integers(1, 3), min_size=nd, max_size=nd))
    padding = data.draw(
        st.one_of(
            st.integers(0, 3),
            st.sampled_from(["SAME", "VALID"]),
            st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=nd, max_size=nd),
        )
    )
    filters = data.draw(st.integers(1, 3))
    kw = dict(stride=tuple(stride), padding=padding, dilation=tuple(dilation))
    try:
        shape = ar.conv_output_shape((2, *size), tuple(kernel), filters=filters, **kw)
    except ValueError:
        with pytest.raises(ValueError):
            ar.conv(jnp.ones((2, *size)), jnp.ones((filters, 2, *kernel)), **kw)
        return
    assert ar.conv(jnp.ones((2, *size)), jnp.ones((filters, 2, *kernel)), **kw).shape == shape
    assert ar.conv_output_shape(tuple(size), tuple(kernel), **kw) == shape[1:]


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("seed", range(4))
def test_closed_form_gradients_equal_vjp(nd, seed):
    x, w, kw = random_case(np.random.default_rng(100 + seed * 3 + nd), nd)
    x, w = jnp.asarray(x), jnp.asarray(w)
    y, vjp = jax.vjp(lambda x, w: ar.conv(x, w, **kw), x, w)
    g = jnp.asarray(np.random.default_rng(seed).normal(size=y.shape))
    dx, dw = vjp(g)
    np.testing.assert_allclose(ar.conv_weight_grad(x, g, w.shape[2:], **kw), dw, rtol=1e-10,
                               atol=1e-10)
    np.testing.assert_allclose(ar.conv_input_grad(w, g, x.shape, **kw), dx, rtol=1e-10,
                               atol=1e-10)


def test_same_padding_gradients_equal_vjp():
    rng = np.random.default_rng(5)
    x, w = jnp.asarray(rng.normal(size=(3, 11, 6))), jnp.asarray(rng.normal(size=(2, 3, 4, 3)))
    kw = dict(stride=(3, 2), padding="SAME", dilation=(2, 1))
    y, vjp = jax.vjp(lambda x, w: ar.conv(x, w, **kw), x, w)
    g = jnp.asarray(rng.normal(size=y.shape))
    dx, dw = vjp(g)
    np.testing.assert_allclose(ar.conv_weight_grad(x, g, (4, 3), **kw), dw, rtol=1e-10)
    np.testing.assert_allclose(ar.conv_input_grad(w, g, x.shape, **kw), dx, rtol=1e-10)


def test_gradients_match_finite_differences():
    x, w, kw = random_case(np.random.default_rng(7), 2)
    check_grads(lambda x, w: ar.conv(x, w, **kw), (jnp.asarray(x), jnp.asarray(w)), order=2,
                modes=("rev", "fwd"))


def test_under_jit_vmap_grad():
    rng = np.random.default_rng(8)
    xs = jnp.asarray(rng.normal(size=(4, 2, 9)))
    w = jnp.asarray(rng.normal(size=(3, 2, 3)))
    kw = dict(stride=2, padding=1, dilation=1)
    batched = jax.jit(jax.vmap(lambda x: ar.conv(x, w, **kw)))(xs)
    np.testing.assert_allclose(batched[1], ar.conv(xs[1], w, **kw), rtol=1e-12)
    grad_w = jax.grad(lambda w: jnp.sum(jax.vmap(lambda x: ar.conv(x, w, **kw))(xs) ** 2))(w)
    g = 2 * batched
    closed = jax.jit(jax.vmap(lambda x, g: ar.conv_weight_grad(x, g, 3, **kw)))(xs, g).sum(0)
    np.testing.assert_allclose(grad_w, closed, rtol=1e-10)
    dx = jax.jit(jax.vmap(lambda g: ar.conv_input_grad(w, g, (2, 9), **kw)))(g)
    assert dx.shape == xs.shape
    # The closed forms are differentiable too (second-order use).
    jax.grad(lambda w: ar.conv_input_grad(w, g[0], (2, 9), **kw).sum())(w)
    jax.grad(lambda x: ar.conv_weight_grad(x, g[0], 3, **kw).sum())(xs[0])
    shape = jax.jit(lambda x: jnp.zeros(ar.conv_output_shape(x.shape, 3, stride=2)))(xs[0])
    assert shape.shape == (1, 4)


def test_conv_init():
    w, b = ar.conv_init(jax.random.PRNGKey(0), 4, 6, (3, 3), groups=2)
    assert w.shape == (6, 2, 3, 3) and b.shape == (6,) and w.dtype == jnp.float32
    bound = 1 / np.sqrt(2 * 9)
    assert float(jnp.abs(w).max()) <= bound and float(jnp.abs(w).max()) > 0.8 * bound
    params = jax.jit(lambda k: ar.conv_init(k, 3, 2, 5, dtype=jnp.float64))(jax.random.PRNGKey(1))
    assert params.w.shape == (2, 3, 5) and params.w.dtype == jnp.float64
    y = ar.conv(jnp.ones((3, 9)), params.w) + params.b[:, None]
    assert y.shape == (2, 5)


BAD_CONV = [
    (dict(x=np.ones((1, 3, 3)), w=np.ones((1, 1, 4, 4))), ValueError, r"w's kernel\[0\]=4 .* the padded x's 3"),
    (dict(x=np.ones((1, 8)), w=np.ones((1, 1, 3)), stride=0), ValueError, "stride"),
    (dict(x=np.ones((1, 8)), w=np.ones((1, 1, 3)), padding=-1), ValueError, "padding"),
    (dict(x=np.ones((1, 8)), w=np.ones((1, 1, 3)), padding="FULL"), ValueError, "padding"),
    (dict(x=np.ones((1, 8)), w=np.ones((1, 1, 3)), padding=(1, 2)), ValueError, "padding"),
    (dict(x=np.ones((1, 8)), w=np.ones((1, 1, 3)), dilation=0), ValueError, "dilation"),
    (dict(x=np.ones((1, 8)), w=np.ones((1, 1, 3)), stride=1.5), TypeError, "stride"),
    (dict(x=np.ones((3, 8)), w=np.ones((2, 1, 3)), groups=3), ValueError, "groups"),
    (dict(x=np.ones((3, 8)), w=np.ones((2, 3, 3)), groups=0), ValueError, "groups"),
    (dict(x=np.ones((3, 8)), w=np.ones((2, 2, 3))), ValueError, "w must have shape"),
    (dict(x=np.ones(8), w=np.ones((2, 1, 3))), ValueError, "x must have"),
    (dict(x=np.ones((1, 8)), w=np.ones((2, 1, 3, 3))), ValueError, "w must have"),
    (dict(x=np.ones((1, 8), np.int32), w=np.ones((2, 1, 3))), TypeError, "x must have a floating"),
]


@pytest.mark.parametrize("kwargs,error,match", BAD_CONV)
def test_bad_conv_input(kwargs, error, match):
    kwargs = dict(kwargs)
    x, w = kwargs.pop("x"), kwargs.pop("w")
    with pytest.raises(error, match=match):
        ar.conv(x, w, **kwargs)
    if error is ValueError and x.dtype == np.float64:
        with pytest.raises(error, match=match):
            jax.jit(lambda x, w: ar.conv(x, w, **kwargs))(x, w)


def test_bad_gradient_inputs():
    x, w = jnp.ones((2, 9)), jnp.ones((3, 2, 3))
    with pytest.raises(ValueError, match=r"g must have shape \(3, 4\)"):
        ar.conv_weight_grad(x, jnp.ones((3, 5)), 3, stride=2)
    with pytest.raises(ValueError, match=r"g must have shape \(3, 4\)"):
        jax.jit(lambda g: ar.conv_input_grad(w, g, (2, 9), stride=2))(jnp.ones((3, 3)))
    with pytest.raises(ValueError, match="input_shape"):
        ar.conv_input_grad(w, jnp.ones((3, 4)), (2, 9, 9), stride=2)
    with pytest.raises(ValueError, match="groups"):
        ar.conv_weight_grad(x, jnp.ones((3, 7)), 3, groups=2)
    with pytest.raises(ValueError, match="input_shape"):
        ar.conv_output_shape((5,), (2, 2))
    with pytest.raises(ValueError, match="filters"):
        ar.conv_output_shape((1, 5), 2, filters=0)
    with pytest.raises(ValueError, match="groups"):
        ar.conv_init(jax.random.PRNGKey(0), 3, 4, 3, groups=2)
    with pytest.raises(TypeError, match="dtype"):
        ar.conv_init(jax.random.PRNGKey(0), 3, 4, 3, dtype=jnp.int32)
