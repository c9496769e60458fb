from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax.test_util import check_grads

import attnrnn as ar
import references
from references import rescale_to_bound
from helpers import assert_tree_allclose


def make(k, seed=0, n=3, m=4, d=5, T=11, dtype=jnp.float64, scale=1.0):
    key_p, key_x = jax.random.split(jax.random.PRNGKey(seed))
    params = ar.attention_rnn_init(key_p, n, m, k=k, key_size=d, dtype=dtype)
    params = jax.tree.map(lambda w: w * scale, params)
    return params, jax.random.normal(key_x, (T, n), dtype)


MASKS = {
    "none": None,
    "pre": np.arange(11) >= 4,
    "post": np.arange(11) < 8,
    "holes": np.array([1, 0, 1, 1, 0, 0, 1, 0, 1, 1, 0], bool),
}


@pytest.mark.parametrize("k", [0, 1, 2, 5, None])
@pytest.mark.parametrize("mask", list(MASKS))
def test_matches_loop_reference(k, mask):
    params, xs = make(k)
    m = MASKS[mask]
    hs, a = ar.attention_rnn(params, xs, k=k, return_attention=True,
                             mask=None if m is None else jnp.asarray(m))
    ref_hs, ref_a = references.attention_rnn(params, xs, k, m)
    np.testing.assert_allclose(hs, ref_hs, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(a, ref_a, rtol=1e-10, atol=1e-12)
    valid = np.ones(11, bool) if m is None else m
    np.testing.assert_allclose(a.sum(1), valid.astype(float), rtol=1e-12)
    assert a.shape == (11, 11 if k is None else k + 1)
    np.testing.assert_allclose(ar.attention_rnn(params, xs, k=k, mask=None if m is None else
                                                jnp.asarray(m)), hs, rtol=1e-14)


def test_infinite_rows_are_zero_beyond_the_history():
    params, xs = make(None)
    _, a = ar.attention_rnn(params, xs, k=None, return_attention=True)
    assert np.all(np.triu(np.asarray(a), 1) == 0)
    assert np.all(np.asarray(a)[np.tril_indices(11)] > 0)


def test_zero_states_before_the_start_take_part():
    """At t = 1 AttentionRNN(2) softmaxes over w_0 and two zero scores (values zero)."""
    params, xs = make(2)
    _, a = ar.attention_rnn(params, xs, k=2, return_attention=True)
    w0 = float((params.Q_x @ xs[0]) @ (params.K_x @ xs[0]))
    expected = np.exp(w0) / (np.exp(w0) + 2)
    np.testing.assert_allclose(a[0, 0], expected, rtol=1e-12)
    np.testing.assert_allclose(a[0, 1:], (1 - expected) / 2, rtol=1e-12)


def test_k1_and_infinity_share_shapes_but_differ():
    params, xs = make(1)
    h1 = ar.attention_rnn(params, xs, k=1)
    hinf = ar.attention_rnn(params, xs, k=None)
    assert not np.allclose(h1, hinf)
    np.testing.assert_allclose(hinf, references.attention_rnn(params, xs, None)[0], rtol=1e-10)


@pytest.mark.parametrize("k", [0, 2, None])
def test_step_loop_equals_scan(k):
    params, xs = make(k, seed=3)
    state = ar.attention_rnn_initial_state(params, k=k)
    hs = ar.attention_rnn(params, xs, k=k)
    step = jax.jit(lambda s, x: ar.attention_rnn_step(params, s, x, k=k))
    for t in range(xs.shape[0]):
        state, h = step(state, xs[t])
        np.testing.assert_allclose(h, hs[t], rtol=1e-12, atol=1e-14)


def reference_step(params, x, history, k):
    """h[t] from x[t] and the history, written in JAX from the equations (for jacfwd)."""
    scores = [(params.Q_x @ x) @ (params.K_x @ x)]
    values = [params.V_x @ x]
    for i in range(history.shape[0]):
        j = 0 if k is None else i
        scores.append((params.Q_h[j] @ history[i]) @ (params.K_h[j] @ history[i]))
        values.append(params.V_h[j] @ history[i])
    return jax.nn.softmax(jnp.stack(scores)) @ jnp.stack(values)


@pytest.mark.parametrize("k,lags", [(2, 2), (1, 1), (0, 0), (None, 6), (None, 1), (None, 0)])
def test_jacobian_equals_jacfwd(k, lags):
    params, xs = make(k, seed=5, n=3, m=4, d=6)
    history = jax.random.normal(jax.random.PRNGKey(9), (lags, 4), jnp.float64)
    closed = ar.attention_rnn_jacobian(params, xs[0], history, k=k)
    assert closed.shape == (4, 4)
    if lags == 0:
        np.testing.assert_array_equal(closed, 0)
        return
    for lag in range(1, lags + 1):
        closed = ar.attention_rnn_jacobian(params, xs[0], history, k=k, lag=lag)
        auto = jax.jacfwd(
            lambda h: reference_step(params, xs[0], history.at[lag - 1].set(h), k)
        )(history[lag - 1])
        np.testing.assert_allclose(closed, auto, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="lag must be between 1"):
        ar.attention_rnn_jacobian(params, xs[0], history, k=k, lag=lags + 1)


@pytest.mark.parametrize("k", [2, None])
def test_huge_scores_stay_finite_in_float32(k):
    params, xs = make(k, seed=1, m=6, d=6, T=40, dtype=jnp.float32)
    # Large queries and keys (not values, which would make the states themselves overflow).
    params = params._replace(**{f: getattr(params, f) * 40.0 for f in ("Q_x", "K_x", "Q_h",
                                                                           "K_h")})
    xs = xs * 3
    hs, a = ar.attention_rnn(params, xs, k=k, return_attention=True)
    w0 = jnp.sum((xs @ params.Q_x.T) * (xs @ params.K_x.T), -1)
    assert float(jnp.abs(w0).max()) > 1e4  # scores this large overflow a naive exp
    assert bool(jnp.isfinite(hs).all()) and bool(jnp.isfinite(a).all())
    ref_hs, _ = references.attention_rnn(params, xs, k)
    np.testing.assert_allclose(hs, ref_hs, rtol=1e-3, atol=1e-3 * np.abs(ref_hs).max())
    grads = jax.grad(lambda p, x: jnp.sum(ar.attention_rnn(p, x, k=k) ** 2), (0, 1))(params, xs)
    assert all(bool(jnp.isfinite(g).all()) for g in jax.tree.leaves(grads))


@pytest.mark.parametrize("k", [2, None])
def test_gradients_match_reference_and_finite_differences(k):
    params, xs = make(k, seed=2, T=7)
    mask = jnp.asarray([1, 1, 0, 1, 1, 0, 1], bool)

    def loss(p, x):
        return jnp.sum(jnp.sin(ar.attention_rnn(p, x, k=k, mask=mask)))

    def ref_loss(p, x):
        history = jnp.zeros((0 if k is None else k, 4))
        total = 0.0
        for t in range(x.shape[0]):
            if mask[t]:
                h = reference_step(p, x[t], history, k)
                history = jnp.concatenate([h[None], history])
                if k is not None:
                    history = history[:k]
            total = total + jnp.sum(jnp.sin(history[0] if history.shape[0] else h))
        return total

    g, g_ref = jax.grad(loss, (0, 1))(params, xs), jax.grad(ref_loss, (0, 1))(params, xs)
    assert_tree_allclose(g, g_ref, rtol=1e-9, atol=1e-12)
    check_grads(loss, (params, xs), order=1, modes=("rev",))


@pytest.mark.parametrize("k", [3, None])
def test_under_jit_vmap_grad(k):
    params, xs = make(k, T=8)
    batch = jnp.stack([xs[:8], -xs[:8]])
    masks = jnp.stack([jnp.ones(8, bool), jnp.arange(8) >= 3])
    run = jax.jit(jax.vmap(lambda x, m: ar.attention_rnn(params, x, k=k, mask=m,
                                                          return_attention=True)))
    hs, a = run(batch, masks)
    ref_hs, ref_a = references.attention_rnn(params, -xs[:8], k, np.asarray(masks[1]))
    np.testing.assert_allclose(hs[1], ref_hs, rtol=1e-10)
    np.testing.assert_allclose(a[1], ref_a, rtol=1e-10, atol=1e-14)
    g = jax.jit(jax.grad(lambda p: jnp.sum(jax.vmap(lambda x: ar.attention_rnn(p, x, k=k))(batch))))(params)
    assert isinstance(g, ar.AttentionRNNParams)
    history = hs[0, :3][::-1] if k is not None else hs[0, :5][::-1]
    jac = jax.jit(jax.vmap(lambda x: ar.attention_rnn_jacobian(params, x, history, k=k)))(xs)
    assert jac.shape == (8, 4, 4)
    jax.grad(lambda p: jnp.sum(ar.attention_rnn_jacobian(p, xs[0], history, k=k)))(params)
    inits = jax.vmap(lambda key: ar.attention_rnn_init(key, 3, 4, k=k))(jax.random.split(
        jax.random.PRNGKey(0), 2))
    assert inits.V_h.shape == (2, 1 if k is None else k, 4, 4)
    state = jax.vmap(lambda _: ar.attention_rnn_initial_state(params, k=k))(jnp.arange(2))
    state, h = jax.vmap(lambda s, x: ar.attention_rnn_step(params, s, x, k=k))(state, batch[:, 0])
    np.testing.assert_allclose(h[0], hs[0, 0], rtol=1e-12)  # batch 1 masks its first step
    jax.grad(lambda p: jnp.sum(ar.attention_rnn_step(
        p, ar.attention_rnn_initial_state(p, k=k), xs[0], k=k)[1]))(params)


def test_init_shapes_and_dtype():
    p = ar.attention_rnn_init(jax.random.PRNGKey(0), 3, 4, k=2, key_size=5, dtype=jnp.float64)
    assert [w.shape for w in p] == [(5, 3), (5, 3), (4, 3), (2, 5, 4), (2, 5, 4), (2, 4, 4)]
    assert all(w.dtype == jnp.float64 for w in p)
    p = ar.attention_rnn_init(jax.random.PRNGKey(0), 3, 4, k=None)
    assert p.Q_h.shape == (1, 4, 4) and p.Q_h.dtype == jnp.float32
    assert ar.attention_rnn_init(jax.random.PRNGKey(0), 3, 4, k=0).V_h.shape == (0, 4, 4)
    assert ar.attention_rnn(p, jnp.ones((2, 3), jnp.float32), k=None).dtype == jnp.float32


def bad_cases():
    p2, xs = make(2)
    pinf, _ = make(None)
    history = jnp.zeros((2, 4))
    return [
        (lambda: ar.attention_rnn(p2, xs, k=3), ValueError, "k=3 does not match params"),
        (lambda: ar.attention_rnn(p2, xs, k=None), ValueError, "k=None does not match params"),
        (lambda: ar.attention_rnn(pinf, xs, k=2), ValueError, "k=2 does not match"),
        (lambda: ar.attention_rnn(p2, xs, k=-1), ValueError, "k must be an int >= 0"),
        (lambda: ar.attention_rnn(p2, xs, k=2.0), TypeError, "k must be a Python int"),
        (lambda: ar.attention_rnn(p2, xs, k=True), TypeError, "k must be a Python int"),
        (lambda: ar.attention_rnn(p2, xs[:, :2], k=2), ValueError, "xs must have shape"),
        (lambda: ar.attention_rnn(p2, xs[0], k=2), ValueError, "xs must have 2 dimensions"),
        (lambda: ar.attention_rnn(p2, xs, k=2, mask=jnp.ones(3, bool)), ValueError, "mask"),
        (lambda: ar.attention_rnn(p2, xs, k=2, mask=jnp.ones(11)), TypeError, "mask"),
        (lambda: ar.attention_rnn(p2._replace(V_x=p2.V_x[:, :2]), xs, k=2), ValueError,
         "params.V_x"),
        (lambda: ar.attention_rnn(p2._replace(K_h=p2.K_h[:, :3]), xs, k=2), ValueError,
         "params.K_h"),
        (lambda: ar.attention_rnn(p2[:5], xs, k=2), TypeError, "params"),
        (lambda: ar.attention_rnn(p2, xs, k=2, backward="magic"), ValueError, "backward"),
        (lambda: ar.attention_rnn_jacobian(p2, xs[0], history[:1], k=2), ValueError, "history"),
        (lambda: ar.attention_rnn_jacobian(p2, xs[0, :2], history, k=2), ValueError, "x must"),
        (lambda: ar.attention_rnn_jacobian(pinf, xs[0], jnp.zeros((3, 5)), k=None), ValueError,
         "history"),
        (lambda: ar.attention_rnn_step(p2, ar.attention_rnn_initial_state(pinf, k=None), xs[0],
                                       k=2), TypeError, "state must be a WindowState"),
        (lambda: ar.attention_rnn_init(jax.random.PRNGKey(0), 3, 4, k=-2), ValueError, "k"),
        (lambda: ar.attention_rnn_init(jax.random.PRNGKey(0), 3, 4, k=1, key_size=0),
         ValueError, "key_size"),
    ]


@pytest.mark.parametrize("case", range(len(bad_cases())))
def test_bad_input(case):
    call, error, match = bad_cases()[case]
    with pytest.raises(error, match=match):
        call()


def test_bad_input_under_jit():
    params, xs = make(2)
    with pytest.raises(ValueError, match="mask"):
        jax.jit(lambda x, m: ar.attention_rnn(params, x, k=2, mask=m))(xs, jnp.ones(2, bool))
    with pytest.raises(ValueError, match="does not match"):
        jax.jit(lambda p: ar.attention_rnn(p, xs, k=4))(params)


@pytest.mark.parametrize("k", [2, None])
@pytest.mark.parametrize("opts", [dict(scale=0.3), dict(cap=2.0), dict(norm=True),
                                  dict(scale=0.5, cap=3.0, norm=True)])
def test_stability_options_match_reference(k, opts):
    params, xs = make(k, seed=4)
    options = ar.AttentionOptions(score_scale=opts.get("scale", 1.0),
                                  score_cap=opts.get("cap"),
                                  normalize_states=opts.get("norm", False))
    hs = ar.attention_rnn(params, xs, k=k, options=options)
    np.testing.assert_allclose(hs, references.attention_rnn(params, xs, k, **opts)[0], rtol=1e-9,
                               atol=1e-12)
    state = ar.attention_rnn_initial_state(params, k=k)
    state, h = ar.attention_rnn_step(params, state, xs[0], k=k, options=options)
    np.testing.assert_allclose(h, hs[0], rtol=1e-12)


def test_normalised_states_stay_bounded_where_the_homework_model_grows():
    """The runaway loop: a state's score is quadratic in it (here ||h||²), so the largest
    state wins the softmax, and V = 2I doubles it. Normalising the states read by the lag
    terms bounds every state by max(|V_0 x|, ||V||_2 √m)."""
    eye = jnp.eye(4)
    params = ar.AttentionRNNParams(0 * eye, 0 * eye, eye, eye[None], eye[None], 2 * eye[None])
    xs = jnp.ones((30, 4))
    for k in (1, None):
        plain = ar.attention_rnn(params, xs, k=k)
        normed = ar.attention_rnn(params, xs, k=k,
                                  options=ar.AttentionOptions(normalize_states=True))
        assert float(jnp.abs(plain[10]).max()) > 100  # doubling every step
        assert float(jnp.abs(normed).max()) <= 2 * np.sqrt(4) + 1e-9


def test_bad_options():
    params, xs = make(2)
    with pytest.raises(ValueError, match="score_scale"):
        ar.attention_rnn(params, xs, k=2, options=ar.AttentionOptions(score_scale=0.0))
    with pytest.raises(ValueError, match="score_cap"):
        ar.attention_rnn(params, xs, k=2, options=ar.AttentionOptions(score_cap=-1.0))
    with pytest.raises(TypeError, match="options must be AttentionOptions"):
        ar.attention_rnn(params, xs, k=2, options={"score_scale": 0.5})
    # Options passed to jax.jit as an argument are traced: say to make them static.
    with pytest.raises(TypeError, match=r"options.score_scale must be a static Python value.*"
                                        r"static_argnames=\('options',\)"):
        jax.jit(lambda o: ar.attention_rnn(params, xs, k=2, options=o))(ar.AttentionOptions())
    static = jax.jit(lambda x, options: ar.attention_rnn(params, x, k=2, options=options),
                     static_argnames="options")
    assert static(xs, ar.AttentionOptions(score_cap=2.0)).shape == xs.shape[:1] + (4,)


@pytest.mark.parametrize("k", [0, 2, None])
def test_empty_sequence(k):
    """No steps: no states and no weights (the (T, T) weights of k=None are (0, 0))."""
    params, _ = make(k)
    hs, a = ar.attention_rnn(params, jnp.zeros((0, 3)), k=k, return_attention=True)
    assert hs.shape == (0, 4)
    assert a.shape == ((0, 0) if k is None else (0, k + 1))


@pytest.mark.parametrize("k,mask,opts,vmapped", [
    (0, "none", None, False), (2, "holes", None, True), (None, "holes", None, False),
    (3, "pre", ar.AttentionOptions(0.5, 3.0, True), False),
    (None, "none", ar.AttentionOptions(0.5, 3.0, True), True)])
def test_fused_backward_equals_autodiff(k, mask, opts, vmapped):
    """The hand-written backward pass (the time loop's weight-tapped pass) against JAX's own, through the
    states and the attention weights, for every input; for two cases also under vmap both
    ways round (per-example gradients, and the gradient of a vmapped loss)."""
    params, xs = make(k, seed=5, scale=0.7)
    m = None if MASKS[mask] is None else jnp.asarray(MASKS[mask])
    probe = jax.random.normal(jax.random.PRNGKey(9), (11, 4), jnp.float64)

    def loss(backward, p, x):
        hs, a = ar.attention_rnn(p, x, k=k, mask=m, options=opts, return_attention=True,
                                 backward=backward)
        return jnp.sum(jnp.sin(hs) * probe) + jnp.sum(a**2)

    fused, expected = (jax.grad(partial(loss, b), argnums=(0, 1))(params, xs)
                       for b in ("fused", "autodiff"))
    assert_tree_allclose(fused, expected, rtol=1e-10, atol=1e-13)
    if not vmapped:
        return

    batch = jnp.stack([xs, -xs, 0.5 * xs])
    per_example = {b: jax.jit(jax.vmap(jax.grad(partial(loss, b)), (None, 0)))(params, batch)
                   for b in ("fused", "autodiff")}
    summed = {b: jax.grad(lambda p: jnp.sum(jax.vmap(partial(loss, b, p))(batch)))(params)
              for b in ("fused", "autodiff")}
    for results in (per_example, summed):
        assert_tree_allclose(results["fused"], results["autodiff"], rtol=1e-10, atol=1e-13)


def test_fused_backward_keeps_only_carries():
    """What the fused backward stores grows with T like the carry, not like every
    intermediate of a step (autodiff's residuals)."""
    params, xs = make(None, T=64)

    def residual_floats(backward):
        _, vjp = jax.vjp(lambda p: ar.attention_rnn(p, xs, k=None, backward=backward), params)
        return sum(x.size for x in jax.tree.leaves(vjp) if hasattr(x, "size"))

    assert residual_floats("fused") < residual_floats("autodiff")


def bounded_weights(params, nonexpansive, score_bound, value_bound):
    """The weights as AttentionOptions' bounds are documented to apply them, in NumPy."""
    Q_x, K_x, V_x, Q_h, K_h, V_h = (np.asarray(w, np.float64) for w in params)
    if nonexpansive:
        V_h = rescale_to_bound(V_h, 1.0)
    if score_bound is not None:
        Q_h, K_h = rescale_to_bound(Q_h, score_bound), rescale_to_bound(K_h, score_bound)
    if value_bound is not None:
        V_x = V_x / np.maximum(1.0, np.linalg.norm(V_x, axis=0) / value_bound)
    return ar.AttentionRNNParams(Q_x, K_x, V_x, Q_h, K_h, V_h)


def adversarial(k, seed, norm, T=300, n=3, m=5, d=4):
    """Weights whose every matrix has spectral norm ``norm`` and inputs of unit order."""
    params, xs = make(k, seed=seed, n=n, m=m, d=d, T=T)
    params = ar.AttentionRNNParams(*(w * norm / np.linalg.norm(np.asarray(w), 2, axis=(-2, -1),
                                                                  keepdims=True)
                                     for w in params))
    return params, xs


@pytest.mark.parametrize("k", [1, 3, None])
def test_bounds_hold_for_adversarial_weights(k):
    """Spectral norms 5–20, T = 300: the homework's model runs away; with the bounds every
    state obeys ‖h[t]‖ ≤ max_s ‖V_x' x[s]‖, every past score |w_i| ≤ b² max ‖h‖², and outputs
    and gradients are finite. The function equals the raw model run on the rescaled weights."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    options = ar.AttentionOptions(nonexpansive=True, score_bound=1.0, value_bound=2.0)
    run = jax.jit(lambda p, x: ar.attention_rnn(p, x, k=k, options=options, return_state=True))
    grad = jax.jit(jax.grad(lambda p, x: jnp.sum(ar.attention_rnn(p, x, k=k, options=options)
                                                 ** 2), (0, 1)))
    raw = jax.jit(lambda p, x: ar.attention_rnn(p, x, k=k))

    @settings(max_examples=6, deadline=None, derandomize=True)
    @given(seed=st.integers(0, 10_000), norm=st.floats(5.0, 20.0))
    def check(seed, norm):
        params, xs = adversarial(k, seed, norm)
        hs, _ = run(params, xs)
        effective = bounded_weights(params, True, 1.0, 2.0)
        np.testing.assert_allclose(hs, ar.attention_rnn(effective, xs, k=k), rtol=1e-9,
                                   atol=1e-12)
        radius = np.linalg.norm(np.asarray(xs) @ effective.V_x.T, axis=1).max()
        assert np.linalg.norm(np.asarray(hs), axis=1).max() <= radius * (1 + 1e-12)
        assert radius <= 2.0 * np.abs(np.asarray(xs)).sum(1).max() * (1 + 1e-12)
        for Q, K in zip(effective.Q_h, effective.K_h):
            scores = np.einsum("ti,ti->t", np.asarray(hs) @ Q.T, np.asarray(hs) @ K.T)
            assert np.abs(scores).max() <= radius**2 * (1 + 1e-12)
        grads = grad(params, xs)
        assert all(bool(jnp.isfinite(g).all()) for g in jax.tree.leaves(grads))

    check()
    # The homework's model on the same weights leaves the ball ‖h‖ ≤ max_s ‖V_x x[s]‖.
    params, xs = adversarial(k, 0, 20.0)
    homework = np.linalg.norm(np.asarray(raw(params, xs)), axis=1)
    radius = np.linalg.norm(np.asarray(xs @ params.V_x.T), axis=1).max()
    assert not np.isfinite(homework).all() or homework.max() > 2 * radius


@pytest.mark.parametrize("k", [2, None])
def test_state_bound_with_an_initial_state(k):
    """With a given initial state the bound is max(max_s ‖V_x' x[s]‖, R_0), R_0 the largest
    past term the initial state holds."""
    params, xs = adversarial(k, 3, 10.0, T=40)
    options = ar.AttentionOptions(nonexpansive=True)
    big = 50.0 * jnp.ones(5)
    if k is None:
        state = ar.OnlineSoftmaxState(big, jnp.array(3.0), jnp.array(2.0), 2 * big)
        r0 = float(jnp.linalg.norm(state.numerator) / state.denominator)
    else:
        state = ar.WindowState(big, jnp.stack([big, -0.5 * big]))
        r0 = float(jnp.linalg.norm(big))
    hs = ar.attention_rnn(params, xs, k=k, options=options, initial_state=state)
    radius = max(float(jnp.linalg.norm(xs @ params.V_x.T, axis=1).max()), r0)
    assert float(jnp.linalg.norm(hs, axis=1).max()) <= radius * (1 + 1e-12)
    assert float(jnp.linalg.norm(hs, axis=1).max()) > 0.5 * r0  # the initial state matters


def test_bounded_params_is_what_the_function_runs():
    params, xs = adversarial(2, 1, 8.0, T=30)
    options = ar.AttentionOptions(nonexpansive=True, score_bound=0.5, value_bound=1.5)
    effective = jax.jit(ar.bounded_params, static_argnums=1)(params, options)
    reference = bounded_weights(params, True, 0.5, 1.5)
    for got, want in zip(effective, reference):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(ar.attention_rnn(params, xs, k=2, options=options),
                               ar.attention_rnn(effective, xs, k=2), rtol=1e-12)
    with pytest.raises(TypeError, match="options must be AttentionOptions"):
        ar.bounded_params(params, None)
    with pytest.raises(TypeError, match="params must be AttentionRNNParams"):
        ar.bounded_params(tuple(params), options)
    with pytest.raises(ValueError, match="options.score_bound"):
        ar.bounded_params(params, options._replace(score_bound=-1.0))


@pytest.mark.parametrize("k", [0, 2, None])
def test_reverse_equals_the_flipped_run(k):
    params, xs = make(k, seed=7)
    mask = jnp.asarray(MASKS["pre"])
    hs, a = ar.attention_rnn(params, xs, k=k, mask=mask, reverse=True, return_attention=True)
    flipped, a_flipped = ar.attention_rnn(params, xs[::-1], k=k, mask=mask[::-1],
                                          return_attention=True)
    np.testing.assert_allclose(hs, flipped[::-1], rtol=1e-12)
    np.testing.assert_allclose(a, a_flipped[::-1], rtol=1e-12)


def test_bad_initial_state():
    params, xs = make(2)
    with pytest.raises(TypeError, match="initial_state must be a WindowState"):
        ar.attention_rnn(params, xs, k=2,
                         initial_state=ar.attention_rnn_initial_state(make(None)[0], k=None))
    with pytest.raises(ValueError, match="initial_state.history"):
        ar.attention_rnn(params, xs, k=2, initial_state=ar.WindowState(jnp.zeros(4),
                                                                       jnp.zeros((3, 4))))


# Heads and recency (AttentionOptions.heads / .recency): the weights over the past know when
# each state was made, exactly and in O(m) per step.

HEADED = {
    "one head, no recency": ar.AttentionOptions(heads=1, recency=(0.0,)),
    "one head, recency": ar.AttentionOptions(recency=(0.7,)),
    "two heads": ar.AttentionOptions(heads=2),
    "two heads, recency": ar.AttentionOptions(heads=2, recency=(0.0, 1.5)),
    "four heads, bounded": ar.AttentionOptions(nonexpansive=True, score_bound=0.7,
                                               value_bound=2.0, heads=4,
                                               recency=(0.0, 0.25, 1.0, 3.0)),
    "two heads, stabilised": ar.AttentionOptions(score_scale=0.5, score_cap=2.0,
                                                 normalize_states=True, heads=2,
                                                 recency=(0.3, 0.0)),
    "a head per key channel": ar.AttentionOptions(nonexpansive=True, value_bound=2.0,
                                                  score_scale=0.35, score_cap=5.0, heads=4,
                                                  recency=(0.0, 0.003, 0.12, 5.0)),
}


def make_headed(k, seed=0, T=11):
    return make(k, seed=seed, n=3, m=8, d=4, T=T)


def reference_with(params, xs, k, options, mask=None):
    """The float64 loop on the weights as the bounds apply them (they are tested apart)."""
    effective = ar.bounded_params(params, options)
    return references.attention_rnn(
        effective, xs, k, mask, scale=options.score_scale, cap=options.score_cap,
        norm=options.normalize_states, heads=options.heads, recency=options.recency)


@pytest.mark.parametrize("k", [2, None])
@pytest.mark.parametrize("name", list(HEADED))
@pytest.mark.parametrize("mask", ["none", "holes"])
def test_heads_and_recency_match_the_quadratic_reference(k, name, mask):
    """Every past state in every head, the decay included, in the states and the weights."""
    options = HEADED[name]
    params, xs = make_headed(k, seed=3)
    m = None if MASKS[mask] is None else jnp.asarray(MASKS[mask])
    hs, a = ar.attention_rnn(params, xs, k=k, options=options, mask=m, return_attention=True)
    ref_hs, ref_a = reference_with(params, xs, k, options, MASKS[mask])
    np.testing.assert_allclose(hs, ref_hs, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(a, ref_a, rtol=1e-10, atol=1e-12)
    heads = options.heads
    assert a.shape == (11, 11 if k is None else k + 1) + ((heads,) if heads > 1 else ())
    valid = np.ones(11, bool) if MASKS[mask] is None else MASKS[mask]
    sums = np.asarray(a.sum(1)).reshape(11, -1)
    np.testing.assert_allclose(sums, np.repeat(valid[:, None], sums.shape[1], 1), rtol=1e-12)


@pytest.mark.parametrize("k", [2, None])
def test_a_head_per_channel_matches_the_reference(k):
    """The training default's shape: as many heads as state and key channels (each head's
    score one product, its values one channel), rates log-spaced; states, weights, and the
    hand-written backward pass against autodiff."""
    from attnrnn.train.cells import log_rates

    options = ar.AttentionOptions(nonexpansive=True, value_bound=2.0, score_scale=0.35,
                                  score_cap=5.0, heads=6, recency=log_rates(6, 0.003, 5.0))
    params, xs = make(k, seed=5, n=3, m=6, d=6, T=11, scale=2.0)
    mask = jnp.asarray(MASKS["holes"])
    hs, a = ar.attention_rnn(params, xs, k=k, options=options, mask=mask, return_attention=True)
    ref_hs, ref_a = reference_with(params, xs, k, options, MASKS["holes"])
    np.testing.assert_allclose(hs, ref_hs, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(a, ref_a, rtol=1e-10, atol=1e-12)
    grads = {backward: jax.grad(lambda p, b=backward: jnp.sum(jnp.sin(ar.attention_rnn(
        p, xs, k=k, options=options, mask=mask, backward=b))))(params)
        for backward in ("fused", "autodiff")}
    assert_tree_allclose(grads["fused"], grads["autodiff"], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("k", [2, None])
def test_one_head_without_recency_is_the_homework_model(k):
    params, xs = make(k, seed=1)
    plain = ar.attention_rnn(params, xs, k=k, return_attention=True)
    neutral = ar.attention_rnn(params, xs, k=k, return_attention=True,
                               options=ar.AttentionOptions(heads=1, recency=(0.0,)))
    assert_tree_allclose(neutral, plain, rtol=0, atol=0)


def test_recency_lowers_the_weight_of_old_states_by_its_rate():
    """Head g's weight of the state made i steps ago, against the newest, is exp(-λ_g i)
    times what the scores alone give: here every past score is equal (Q_h = 0)."""
    params, xs = make_headed(None, seed=2)
    params = params._replace(Q_h=jnp.zeros_like(params.Q_h))
    options = ar.AttentionOptions(heads=2, recency=(0.0, 1.0))
    _, a = ar.attention_rnn(params, xs, k=None, options=options, return_attention=True)
    last = np.asarray(a[-1])  # (T, heads): the lag-i weights at the last step
    np.testing.assert_allclose(last[2:, 0], last[1, 0], rtol=1e-12)  # no recency: equal
    np.testing.assert_allclose(last[2:, 1] / last[1, 1], np.exp(-np.arange(1, 10)),
                               rtol=1e-10)


@pytest.mark.parametrize("k", [2, None])
@pytest.mark.parametrize("name", ["two heads, recency", "four heads, bounded"])
def test_heads_two_chunks_reverse_and_initial_state(k, name):
    """Two chunks through the returned state equal one call (the carry holds the aged sums);
    reverse equals the flipped run with outputs in place; the carry's size does not grow
    with T."""
    options = HEADED[name]
    params, xs = make_headed(k, seed=4, T=12)
    mask = jnp.asarray(np.array([1, 0, 1, 1, 1, 0, 1, 1, 0, 1, 1, 1], bool))
    hs, final = ar.attention_rnn(params, xs, k=k, options=options, mask=mask, return_state=True)
    first, state = ar.attention_rnn(params, xs[:5], k=k, options=options, mask=mask[:5],
                                    return_state=True)
    second, final2 = ar.attention_rnn(params, xs[5:], k=k, options=options, mask=mask[5:],
                                      initial_state=state, return_state=True)
    np.testing.assert_allclose(jnp.concatenate([first, second]), hs, rtol=1e-12, atol=1e-14)
    assert_tree_allclose(final2, final, rtol=1e-12, atol=1e-14)
    backwards = ar.attention_rnn(params, xs, k=k, options=options, mask=mask, reverse=True)
    flipped = ar.attention_rnn(params, xs[::-1], k=k, options=options, mask=mask[::-1])
    np.testing.assert_allclose(backwards, flipped[::-1], rtol=1e-12)
    if k is None:
        long = ar.attention_rnn(params, jnp.tile(xs, (9, 1)), k=k, options=options,
                                return_state=True)[1]
        assert [leaf.shape for leaf in long] == [(8,), (options.heads,), (options.heads,), (8,)]
        assert [leaf.shape for leaf in long] == [leaf.shape for leaf in final]


@pytest.mark.parametrize("k", [2, None])
def test_heads_step_loop_jit_vmap_grad(k):
    options = HEADED["two heads, recency"]
    params, xs = make_headed(k, seed=6, T=8)
    hs = ar.attention_rnn(params, xs, k=k, options=options)
    state = ar.attention_rnn_initial_state(params, k=k, options=options)
    step = jax.jit(lambda s, x: ar.attention_rnn_step(params, s, x, k=k, options=options))
    for t in range(8):
        state, h = step(state, xs[t])
        np.testing.assert_allclose(h, hs[t], rtol=1e-12, atol=1e-14)
    batch = jnp.stack([xs, -xs])
    run = jax.jit(jax.vmap(lambda x: ar.attention_rnn(params, x, k=k, options=options)))
    np.testing.assert_allclose(run(batch)[1], ar.attention_rnn(params, -xs, k=k,
                                                               options=options), rtol=1e-12)

    def loss(p, x):
        return jnp.sum(jnp.sin(ar.attention_rnn(p, x, k=k, options=options)))

    g = jax.jit(jax.grad(loss, (0, 1)))(params, xs)
    assert isinstance(g[0], ar.AttentionRNNParams)
    check_grads(loss, (params, xs), order=1, modes=("rev",))


@pytest.mark.parametrize("k,name", [(None, "two heads, recency"), (None, "four heads, bounded"),
                                    (2, "two heads, recency"), (None, "two heads, stabilised")])
def test_heads_fused_and_chunked_backward_equal_autodiff(k, name):
    options = HEADED[name]
    params, xs = make_headed(k, seed=5, T=11)
    mask = jnp.asarray(MASKS["holes"])
    probe = jax.random.normal(jax.random.PRNGKey(9), (11, 8), jnp.float64)

    def loss(backward, remat, p, x):
        hs, a = ar.attention_rnn(p, x, k=k, mask=mask, options=options, return_attention=True,
                                 backward=backward, remat_chunk=remat)
        return jnp.sum(jnp.sin(hs) * probe) + jnp.sum(a**2)

    expected = jax.grad(partial(loss, "autodiff", None), (0, 1))(params, xs)
    for backward, remat in (("fused", None), ("fused", 4), ("autodiff", "sqrt")):
        got = jax.grad(partial(loss, backward, remat), (0, 1))(params, xs)
        assert_tree_allclose(got, expected, rtol=1e-10, atol=1e-13)


def headed_step(params, x, history, k, options):
    """h[t] from x[t] and the history, written in JAX from the equations, head by head (for
    jacfwd); the weights are used as given (pass them bounded)."""
    H = options.heads
    rates = jnp.zeros(H) if options.recency is None else jnp.asarray(options.recency)

    def score(q, kk):
        w = options.score_scale * jnp.sum((q * kk).reshape(H, -1), axis=-1)
        return w if options.score_cap is None else options.score_cap * jnp.tanh(
            w / options.score_cap)

    def past(h):
        return h / jnp.sqrt(jnp.mean(h**2) + 1e-6) if options.normalize_states else h

    scores = [score(params.Q_x @ x, params.K_x @ x)]
    values = [params.V_x @ x]
    for i in range(history.shape[0]):
        j = 0 if k is None else i
        p = past(history[i])
        scores.append(score(params.Q_h[j] @ p, params.K_h[j] @ p) - rates * (i + 1))
        values.append(params.V_h[j] @ p)
    a = jax.nn.softmax(jnp.stack(scores), axis=0)  # (lags + 1, H)
    v = jnp.stack(values).reshape(len(values), H, -1)
    return jnp.einsum("lg,lgj->gj", a, v).reshape(-1)


@pytest.mark.parametrize("k,lags", [(2, 2), (None, 5)])
@pytest.mark.parametrize("name", list(HEADED))
def test_jacobian_with_options_equals_jacfwd(k, lags, name):
    options = HEADED[name]
    params, xs = make_headed(k, seed=8)
    history = jax.random.normal(jax.random.PRNGKey(3), (lags, 8), jnp.float64)
    effective = ar.bounded_params(params, options)
    for lag in range(1, lags + 1):
        closed = ar.attention_rnn_jacobian(params, xs[0], history, k=k, lag=lag,
                                           options=options)
        auto = jax.jacfwd(lambda h: headed_step(
            effective, xs[0], history.at[lag - 1].set(h), k, options))(history[lag - 1])
        np.testing.assert_allclose(closed, auto, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("k", [2, None])
def test_bounds_hold_with_heads_and_recency_for_adversarial_weights(k):
    """Spectral norms 5–20, four heads with recency: every head's part of every state stays
    within max_s ‖V_x' x[s]‖ (so ‖h[t]‖ ≤ √H of it), every past score |w| ≤ b² ‖h‖², and
    outputs and gradients are finite."""
    options = ar.AttentionOptions(nonexpansive=True, score_bound=1.0, value_bound=2.0,
                                  heads=4, recency=(0.0, 0.1, 1.0, 4.0))
    run = jax.jit(lambda p, x: ar.attention_rnn(p, x, k=k, options=options))
    grad = jax.jit(jax.grad(lambda p, x: jnp.sum(ar.attention_rnn(p, x, k=k, options=options)
                                                 ** 2), (0, 1)))
    for seed, norm in ((0, 5.0), (1, 12.0), (2, 20.0)):
        params, xs = adversarial(k, seed, norm, T=200, m=8, d=4)
        hs = np.asarray(run(params, xs))
        effective = ar.bounded_params(params, options)
        for V in np.asarray(effective.V_h):  # each head's rows: spectral norm <= 1/2
            for rows in V.reshape(4, 2, 8):
                assert np.linalg.norm(rows, 2) <= 0.5 * (1 + 1e-9)
        radius = np.linalg.norm(np.asarray(xs) @ np.asarray(effective.V_x).T, axis=1).max()
        per_head = np.linalg.norm(hs.reshape(-1, 4, 2), axis=-1)
        assert per_head.max() <= radius * (1 + 1e-12)
        assert np.linalg.norm(hs, axis=1).max() <= 2 * radius * (1 + 1e-12)
        for Q, K in zip(np.asarray(effective.Q_h), np.asarray(effective.K_h)):
            scores = np.einsum("tgi,tgi->tg", (hs @ Q.T).reshape(-1, 4, 1),
                               (hs @ K.T).reshape(-1, 4, 1))
            assert np.abs(scores).max() <= np.linalg.norm(hs, axis=1).max() ** 2 * (1 + 1e-12)
        assert all(bool(jnp.isfinite(g).all()) for g in jax.tree.leaves(grad(params, xs)))


def test_bad_heads_and_recency():
    params, xs = make_headed(None)
    for options, error, match in [
        (ar.AttentionOptions(heads=3), ValueError, r"options.heads=3 must divide the state "
                                                   r"size m=8 and the query/key size d=4"),
        (ar.AttentionOptions(heads=0), ValueError, "options.heads must be an int >= 1"),
        (ar.AttentionOptions(heads=2.0), TypeError, "options.heads must be a Python int"),
        (ar.AttentionOptions(heads=2, recency=(1.0,)), ValueError,
         r"options.recency must be None or a tuple of 2 numbers >= 0"),
        (ar.AttentionOptions(recency=(-1.0,)), ValueError, "options.recency"),
        (ar.AttentionOptions(recency=[1.0]), ValueError, "options.recency"),
        (ar.AttentionOptions(recency=(float("inf"),)), ValueError, "options.recency"),
    ]:
        with pytest.raises(error, match=match):
            ar.attention_rnn(params, xs, k=None, options=options)
    with pytest.raises(ValueError, match=r"initial_state.max must have shape \(2,\)"):
        ar.attention_rnn(params, xs, k=None, options=ar.AttentionOptions(heads=2),
                         initial_state=ar.attention_rnn_initial_state(params, k=None))
