"""The one time loop: every recurrence takes the same options (mask, reverse, unroll,
remat_chunk, backward, an initial state, return_state) and they mean the same thing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import attnrnn as ar
from helpers import assert_tree_allclose

T, N, M = 13, 3, 5
MASK = np.random.default_rng(0).random(T) > 0.3


def gated(k=None, m=M):
    params = ar.gated_rnn_init(jax.random.PRNGKey(0), N, m, dtype=jnp.float64)
    h0 = jax.random.normal(jax.random.PRNGKey(2), (m,), jnp.float64)

    def run(xs, state=None, **options):
        return ar.gated_rnn(params, xs, initial_state=h0 if state is None else state,
                            **options)

    return run, h0


def attention(k, m=M):
    params = ar.attention_rnn_init(jax.random.PRNGKey(0), N, m, k=k, dtype=jnp.float64)
    options = ar.AttentionOptions(nonexpansive=True, score_bound=0.7, value_bound=2.0)
    # A nonzero start, so gradients into it are not trivially zero.
    _, state = ar.attention_rnn(params, jax.random.normal(jax.random.PRNGKey(3), (4, N),
                                                          jnp.float64),
                                k=k, options=options, return_state=True)

    def run(xs, state=state, **options_):
        return ar.attention_rnn(params, xs, k=k, initial_state=state, options=options,
                                **options_)

    return run, state


def baseline(name, m=M):
    """The LSTM, the 1997 LSTM and the GRU, from a nonzero start."""
    from attnrnn.gru import gru, gru_init, gru_initial_state
    from attnrnn.lstm import lstm, lstm_init, lstm_initial_state
    from attnrnn.lstm1997 import lstm1997, lstm1997_init, lstm1997_initial_state

    key = jax.random.PRNGKey(0)
    run, params, zero = {
        "lstm": (lstm, lstm_init(key, N, m, dtype=jnp.float64), lstm_initial_state),
        "gru": (gru, gru_init(key, N, m, dtype=jnp.float64), gru_initial_state),
        "lstm1997": (lstm1997, lstm1997_init(key, N, dtype=jnp.float64),
                     lstm1997_initial_state),
    }[name]
    keys = iter(jax.random.split(jax.random.PRNGKey(5), 4))
    state = jax.tree.map(lambda z: 0.5 * jax.random.normal(next(keys), z.shape, z.dtype),
                         zero(params))

    def call(xs, state=state, **options):
        return run(params, xs, initial_state=state, **options)

    return call, state


RECURRENCES = {"gated": (gated, None), "attention:2": (attention, 2),
               "attention:inf": (attention, None), "lstm": (baseline, "lstm"),
               "lstm1997": (baseline, "lstm1997"), "gru": (baseline, "gru")}
XS = jax.random.normal(jax.random.PRNGKey(1), (T, N), jnp.float64)
WEIGHTS = jax.random.normal(jax.random.PRNGKey(4), (T, M), jnp.float64)


@pytest.mark.parametrize("name", RECURRENCES)
@pytest.mark.parametrize("backward,remat_chunk,reverse,unroll", [
    ("fused", None, False, 1), ("fused", 4, True, 2), ("fused", "sqrt", False, 1),
    ("autodiff", 3, True, 1), ("autodiff", "sqrt", False, 3)])
def test_every_strategy_equals_plain_autodiff(name, backward, remat_chunk, reverse, unroll):
    """Values, and gradients with respect to the inputs and the initial state, of each
    backward strategy with rematerialisation against plain autodiff of the scan."""
    make, k = RECURRENCES[name]
    run, state = make(k)

    def loss(xs, state, **options):
        hs = run(xs, state, mask=MASK, reverse=reverse, **options)
        return jnp.sum(WEIGHTS[:, :hs.shape[1]] * jnp.tanh(hs))  # lstm1997: 4 cells

    plain = jax.value_and_grad(loss, (0, 1))(XS, state, backward="autodiff")
    other = jax.jit(jax.value_and_grad(
        lambda xs, s: loss(xs, s, backward=backward, remat_chunk=remat_chunk, unroll=unroll),
        (0, 1)))(XS, state)
    assert_tree_allclose(other, plain, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", RECURRENCES)
@pytest.mark.parametrize("backward", ["autodiff", "fused"])
def test_two_chunks_through_the_state_equal_one_call(name, backward):
    make, k = RECURRENCES[name]
    run, state = make(k)
    hs, final = run(XS, state, mask=MASK, return_state=True, backward=backward)
    first, middle = run(XS[:6], state, mask=MASK[:6], return_state=True, backward=backward)
    second, again = run(XS[6:], middle, mask=MASK[6:], return_state=True, backward=backward)
    assert_tree_allclose(jnp.concatenate([first, second]), hs, rtol=1e-12, atol=1e-14)
    assert_tree_allclose(again, final, rtol=1e-12, atol=1e-14)
    # Gradients flow into the initial state.
    grad = jax.grad(lambda s: jnp.sum(jnp.sin(run(XS, s, backward=backward))))(state)
    assert jax.tree.structure(grad) == jax.tree.structure(state)
    assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(grad)) > 0


@pytest.mark.parametrize("name", RECURRENCES)
def test_reverse_equals_the_flipped_run(name):
    make, k = RECURRENCES[name]
    run, state = make(k)
    hs, final = run(XS, state, mask=MASK, reverse=True, return_state=True)
    flipped, final_flipped = run(XS[::-1], state, mask=MASK[::-1], return_state=True)
    assert_tree_allclose(hs, flipped[::-1], rtol=1e-12)
    assert_tree_allclose(final, final_flipped, rtol=1e-12)


@pytest.mark.parametrize("name", RECURRENCES)
def test_remat_keeps_fewer_residuals(name):
    """Rematerialisation saves at least a state per step of what the backward pass stores
    (the input projections, computed before the loop, are stored either way)."""
    make, k = RECURRENCES[name]
    run, state = make(k, m=32)
    xs = jax.random.normal(jax.random.PRNGKey(5), (400, N), jnp.float64)

    def residual_floats(backward, chunk):
        _, vjp = jax.vjp(lambda x: run(x, backward=backward, remat_chunk=chunk), xs)
        return sum(a.size for a in jax.tree.leaves(vjp) if hasattr(a, "size"))

    per_step = min(32, sum(leaf.size for leaf in jax.tree.leaves(state)))  # lstm1997: 12
    for backward in ("fused", "autodiff"):
        saved = residual_floats(backward, None) - residual_floats(backward, "sqrt")
        assert saved >= 400 * per_step, backward


@pytest.mark.parametrize("transform", ["jvp", "jacfwd", "hessian"])
def test_forward_mode_through_the_fused_pass_names_the_fix(transform):
    """The hand-written reverse pass cannot carry tangents: the error says to pass
    backward='autodiff', with which every forward-mode transform works."""
    params = ar.gated_rnn_init(jax.random.PRNGKey(0), N, M, dtype=jnp.float64)

    def loss(backward):
        return lambda p: jnp.sum(ar.gated_rnn(p, XS, backward=backward) ** 2)

    apply = {"jvp": lambda f: jax.jvp(f, (params,), (params,)),
             "jacfwd": lambda f: jax.jacfwd(f)(params),
             "hessian": lambda f: jax.hessian(f)(params)}[transform]
    with pytest.raises(TypeError, match="pass backward='autodiff'"):
        apply(loss("fused"))
    apply(loss("autodiff"))


@pytest.mark.parametrize("name", RECURRENCES)
def test_a_bad_initial_state_is_named(name):
    """Every recurrence checks its initial state the same way: the wrong shape is a
    ValueError, the wrong structure a TypeError, each naming initial_state."""
    make, k = RECURRENCES[name]
    run, state = make(k)
    with pytest.raises(ValueError, match="initial_state"):
        run(XS, jax.tree.map(lambda s: s[..., :-1] if s.ndim else s, state))
    with pytest.raises(TypeError, match="initial_state"):
        run(XS, [state, state])

