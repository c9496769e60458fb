"""The public loop, attnrnn.run: a user's own cell, with every keyword, against a plain Python
loop over the steps."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import attnrnn as ar
from helpers import assert_tree_allclose

T, N, M = 13, 3, 5
MASK = np.random.default_rng(0).random(T) > 0.3


def elman(params, h, x):
    """A user's cell: an Elman RNN whose output is its state."""
    W, U, b = params
    h = jnp.tanh(W @ x + U @ h + b)
    return h, h


def lstm_like(params, carry, x):
    """A cell whose carry (h, c) is not its output (h, and a scalar beside it)."""
    W, U, b = params
    h, c = carry
    c = 0.9 * c + jnp.tanh(W @ x + U @ h + b)
    h = jnp.tanh(c)
    return (h, c), {"h": h, "norm": jnp.sum(h * h)}


def cell_params(seed=0):
    keys = jax.random.split(jax.random.PRNGKey(seed), 4)
    return (0.5 * jax.random.normal(keys[0], (M, N), jnp.float64),
            0.5 * jax.random.normal(keys[1], (M, M), jnp.float64),
            0.1 * jax.random.normal(keys[2], (M,), jnp.float64))


def plain_scan(cell, params, xs, init, mask, reverse, skip_output=lambda carry: carry):
    """The reference: a plain Python loop over the steps (no lax.scan), masks and order by
    hand."""
    order = range(T - 1, -1, -1) if reverse else range(T)
    carry, ys = init, [None] * T
    for t in order:
        if mask is None or mask[t]:
            carry, ys[t] = cell(params, carry, xs[t])
        else:
            ys[t] = skip_output(carry)
    return jax.tree.map(lambda *a: jnp.stack(a), *ys), carry


@pytest.mark.parametrize("reverse,mask,unroll,remat_chunk", [
    (False, None, 1, None), (True, MASK, 3, None), (False, MASK, 1, 4), (True, None, 2, "sqrt"),
    (True, MASK, 1, 5), (False, MASK, 2, None)])
def test_run_a_users_cell_equals_a_plain_loop(reverse, mask, unroll, remat_chunk):
    params = cell_params()
    xs = jax.random.normal(jax.random.PRNGKey(1), (T, N), jnp.float64)
    h0 = jax.random.normal(jax.random.PRNGKey(2), (M,), jnp.float64)
    options = dict(mask=mask, reverse=reverse, unroll=unroll, remat_chunk=remat_chunk)
    ys, final = ar.run(elman, params, xs, initial_state=h0, return_state=True, **options)
    want_ys, want_final = plain_scan(elman, params, xs, h0, mask, reverse)
    assert_tree_allclose((ys, final), (want_ys, want_final), rtol=1e-12, atol=1e-12)
    # its gradient too, w.r.t. the parameters, the inputs and the initial state
    loss = lambda p, x, h: jnp.sum(ar.run(elman, p, x, initial_state=h, **options) ** 2)
    want = lambda p, x, h: jnp.sum(plain_scan(elman, p, x, h, mask, reverse)[0] ** 2)
    assert_tree_allclose(jax.grad(loss, (0, 1, 2))(params, xs, h0),
                         jax.grad(want, (0, 1, 2))(params, xs, h0), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("reverse", [False, True])
def test_run_a_cell_whose_carry_is_not_its_output(reverse):
    params = cell_params(1)
    xs = {"x": jax.random.normal(jax.random.PRNGKey(1), (T, N), jnp.float64)}
    cell = lambda p, carry, x: lstm_like(p, carry, x["x"])
    init = (jnp.zeros(M, jnp.float64), jnp.ones(M, jnp.float64))
    skip = lambda carry: {"h": carry[0], "norm": jnp.sum(carry[0] * carry[0])}
    ys, final = ar.run(cell, params, xs, initial_state=init, mask=MASK, reverse=reverse,
                       skip_output=skip, return_state=True)
    assert_tree_allclose((ys, final), plain_scan(cell, params, xs_list(xs), init, MASK,
                                                 reverse, skip), rtol=1e-12, atol=1e-12)
    with pytest.raises(TypeError, match="pass skip_output=lambda carry"):
        ar.run(cell, params, xs, initial_state=init, mask=MASK)


def xs_list(tree):
    return [jax.tree.map(lambda a: a[t], tree) for t in range(T)]


def test_run_two_chunks_through_the_returned_state_equal_one_call():
    params = cell_params()
    xs = jax.random.normal(jax.random.PRNGKey(1), (T, N), jnp.float64)
    h0 = jnp.zeros(M, jnp.float64)
    whole, final = ar.run(elman, params, xs, initial_state=h0, mask=MASK, return_state=True)
    first, middle = ar.run(elman, params, xs[:6], initial_state=h0, mask=MASK[:6],
                           return_state=True)
    second, last = ar.run(elman, params, xs[6:], initial_state=middle, mask=MASK[6:],
                          return_state=True)
    assert_tree_allclose((jnp.concatenate([first, second]), last), (whole, final),
                         rtol=1e-12, atol=1e-12)


def test_run_under_jit_and_vmap_equals_each_example():
    params = cell_params()
    xs = jax.random.normal(jax.random.PRNGKey(1), (4, T, N), jnp.float64)
    masks = jnp.asarray(np.random.default_rng(1).random((4, T)) > 0.3)
    h0 = jnp.zeros(M, jnp.float64)
    batched = jax.jit(jax.vmap(lambda x, m: ar.run(elman, params, x, initial_state=h0, mask=m,
                                                   reverse=True)))(xs, masks)
    for i in range(4):
        assert_tree_allclose(batched[i], ar.run(elman, params, xs[i], initial_state=h0,
                                                mask=masks[i], reverse=True), rtol=1e-12)


def test_run_names_what_is_wrong():
    params, h0 = cell_params(), jnp.zeros(M, jnp.float64)
    xs = jnp.zeros((T, N), jnp.float64)
    for call, error, match in (
        (lambda: ar.run("elman", params, xs, initial_state=h0), TypeError, "cell must be a"),
        (lambda: ar.run(elman, params, {}, initial_state=h0), ValueError, "xs must hold"),
        (lambda: ar.run(elman, params, {"a": xs, "b": xs[:4]}, initial_state=h0), ValueError,
         r"the same leading time axis T, got lengths \[4, 13\]"),
        (lambda: ar.run(elman, params, xs, initial_state=None), TypeError, "initial_state"),
        (lambda: ar.run(elman, params, xs, initial_state=h0, mask=np.ones(4, bool)),
         ValueError, "mask"),
        (lambda: ar.run(elman, params, xs, initial_state=h0, unroll=0), ValueError, "unroll"),
        (lambda: ar.run(elman, params, xs, initial_state=h0, remat_chunk="all"), TypeError,
         "remat_chunk"),
        (lambda: ar.run(elman, params, xs, initial_state=h0, skip_output=3), TypeError,
         "skip_output"),
    ):
        with pytest.raises(error, match=match):
            call()


def _library_cells():
    """(name, cell, params, initial state, the convenience running the same recurrence)."""
    key = jax.random.PRNGKey(3)
    gated = ar.gated_rnn_init(key, N, M, dtype=jnp.float64)
    gru = ar.gru_init(key, N, M, dtype=jnp.float64)
    lstm = ar.lstm_init(key, N, M, dtype=jnp.float64)
    old = ar.lstm1997_init(key, N, dtype=jnp.float64)
    attention = ar.attention_rnn_init(key, N, 4, k=None, dtype=jnp.float64)
    window = ar.attention_rnn_init(key, N, 4, k=2, dtype=jnp.float64)
    heads = ar.AttentionOptions(nonexpansive=True, score_cap=5.0, heads=2, recency=(0.0, 1.0))
    zero = jnp.zeros(M, jnp.float64)
    return [
        ("gated", ar.gated_rnn_cell, gated, zero, lambda p, x, **o: ar.gated_rnn(p, x, **o)),
        ("gru", ar.gru_cell, gru, zero, lambda p, x, **o: ar.gru(p, x, **o)),
        ("lstm", ar.lstm_cell, lstm, (zero, zero), lambda p, x, **o: ar.lstm(p, x, **o)),
        ("lstm1997", ar.lstm1997_cell, old, ar.lstm1997_initial_state(old),
         lambda p, x, **o: ar.lstm1997(p, x, **o)),
        ("attention:inf", ar.attention_rnn_cell(k=None, options=heads), attention,
         ar.attention_rnn_initial_state(attention, k=None, options=heads),
         lambda p, x, **o: ar.attention_rnn(p, x, k=None, options=heads, **o)),
        ("attention:2", ar.attention_rnn_cell(k=2), window,
         ar.attention_rnn_initial_state(window, k=2),
         lambda p, x, **o: ar.attention_rnn(p, x, k=2, **o)),
    ]


@pytest.mark.parametrize("name", [c[0] for c in _library_cells()])
def test_the_librarys_cells_through_run_equal_their_conveniences(name):
    """Every recurrence of the library is a cell: run of it (its own skip_output) equals the
    convenience, with a mask, reversed, values and gradients."""
    _, cell, params, init, convenience = next(c for c in _library_cells() if c[0] == name)
    xs = jax.random.normal(jax.random.PRNGKey(4), (T, N), jnp.float64)
    options = dict(mask=jnp.asarray(MASK), reverse=True)
    ys, final = ar.run(cell, params, xs, initial_state=init, return_state=True, **options)
    want, want_final = convenience(params, xs, initial_state=init, return_state=True, **options)
    assert_tree_allclose((ys, final), (want, want_final), rtol=1e-12, atol=1e-12)

    def loss(p, run):
        return jnp.sum(run(p, xs, initial_state=init, **options) ** 2)

    through_run = lambda p, x, **o: ar.run(cell, p, x, **o)  # noqa: E731
    assert_tree_allclose(jax.grad(loss)(params, through_run), jax.grad(loss)(params, convenience),
                         rtol=1e-9, atol=1e-12)
