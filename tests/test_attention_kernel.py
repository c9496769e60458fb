"""AttentionRNN(∞)'s hand-written kernel (attnrnn._attention_kernel): one channel a head and
capped scores, ``backward="fused"``. Against the float64 quadratic loop of tests/references.py
and against autodiff through the library's online softmax (a running maximum)."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import attnrnn as ar
import references
from attnrnn.attention import has_fused_kernel
from attnrnn.train.cells import log_rates
from helpers import assert_tree_allclose

M = 6
OPTIONS = ar.AttentionOptions(nonexpansive=True, value_bound=2.0, score_scale=0.35,
                              score_cap=5.0, heads=M, recency=log_rates(M, 0.003, 5.0))
HOLES = np.array([1, 0, 1, 1, 0, 0, 1, 0, 1, 1, 0, 1, 1], bool)


def make(seed=0, T=13, scale=2.0, dtype=jnp.float64, options=OPTIONS):
    key_p, key_x = jax.random.split(jax.random.PRNGKey(seed))
    params = ar.attention_rnn_init(key_p, 3, M, k=None, dtype=dtype)
    params = jax.tree.map(lambda w: w * scale, params)
    return params, jax.random.normal(key_x, (T, 3), dtype)


def reference(params, xs, mask=None, options=OPTIONS):
    effective = ar.bounded_params(params, options)
    return references.attention_rnn(effective, xs, None, mask, scale=options.score_scale,
                                    cap=options.score_cap, heads=options.heads,
                                    recency=options.recency)[0]


def sums(state):
    """The carry's sums against one reference (``e^max`` folded in): the same past, whatever
    reference the sums were taken against."""
    return state.denominator * jnp.exp(state.max), state.numerator * jnp.exp(state.max)


def some_state(params, seed):
    """A carry that has seen a few steps (by autodiff: its maximum is a running one)."""
    _, xs = make(seed, T=4)
    return ar.attention_rnn(params, xs, k=None, options=OPTIONS, return_state=True)[1]


def test_the_kernel_applies_to_one_channel_a_head_with_capped_scores():
    params, _ = make()
    assert has_fused_kernel(params, k=None, options=OPTIONS)
    others = [OPTIONS._replace(heads=2, recency=(0.0, 1.0)), OPTIONS._replace(score_cap=None),
              OPTIONS._replace(normalize_states=True)]
    for options in others:
        assert not has_fused_kernel(params, k=None, options=options)
    assert not has_fused_kernel(params, k=1, options=OPTIONS)  # AttentionRNN(1): no kernel
    # Terms down to e^{-2 cap} must be normal numbers: float32's smallest is e^-87.3, float16's
    # e^-9.7 (a cap of 5 falls back there).
    single, half = (jax.tree.map(lambda w, t=t: w.astype(t), params)
                    for t in (jnp.float32, jnp.float16))
    assert has_fused_kernel(single, k=None, options=OPTIONS._replace(score_cap=43.0))
    assert not has_fused_kernel(single, k=None, options=OPTIONS._replace(score_cap=44.0))
    assert not has_fused_kernel(half, k=None, options=OPTIONS)
    # and the kernel is what runs: its carry holds the sums against the cap
    _, state = ar.attention_rnn(params, make()[1], k=None, options=OPTIONS, backward="fused",
                                return_state=True)
    np.testing.assert_array_equal(state.max, np.full(M, 5.0))


@pytest.mark.parametrize("mask", [None, "holes"])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("unroll", [1, 3])
def test_states_state_and_gradients_equal_the_reference_and_autodiff(mask, reverse, unroll):
    params, xs = make(seed=1)
    init = some_state(params, seed=2)
    mask = None if mask is None else jnp.asarray(HOLES)
    probe = jax.random.normal(jax.random.PRNGKey(3), xs.shape[:1] + (M,), jnp.float64)

    def run(backward, p, x, state):
        return ar.attention_rnn(p, x, k=None, options=OPTIONS, initial_state=state, mask=mask,
                                reverse=reverse, unroll=unroll, backward=backward,
                                return_state=True)

    def loss(backward, p, x, state):
        hs, final = run(backward, p, x, state)
        D, N = sums(final)
        return jnp.sum(jnp.sin(hs) * probe) + jnp.sum(jnp.cos(N)) + 0.1 * jnp.sum(jnp.log(D))

    hs, final = run("fused", params, xs, init)
    fresh = ar.attention_rnn(params, xs, k=None, options=OPTIONS, mask=mask, reverse=reverse,
                             backward="fused")
    flip = (lambda a: a[::-1]) if reverse else (lambda a: a)
    expected = flip(reference(params, flip(xs), None if mask is None else flip(HOLES)))
    np.testing.assert_allclose(fresh, expected, rtol=1e-10, atol=1e-12)
    auto_hs, auto_final = run("autodiff", params, xs, init)
    np.testing.assert_allclose(hs, auto_hs, rtol=1e-12, atol=1e-14)
    assert_tree_allclose(sums(final), sums(auto_final), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(final.h, auto_final.h, rtol=1e-12, atol=1e-14)
    grads = {b: jax.grad(partial(loss, b), (0, 1, 2))(params, xs, init)
             for b in ("fused", "autodiff")}
    assert_tree_allclose(grads["fused"], grads["autodiff"], rtol=1e-9, atol=1e-12)


def test_two_chunks_through_the_returned_state_equal_one_call():
    """The kernel's carry (sums against the cap) continues by the kernel and by autodiff's
    running maximum alike, and autodiff's carry continues by the kernel."""
    params, xs = make(seed=4)
    whole = ar.attention_rnn(params, xs, k=None, options=OPTIONS, mask=jnp.asarray(HOLES))
    for first_backward, second_backward in (("fused", "fused"), ("fused", "autodiff"),
                                            ("autodiff", "fused")):
        def part(x, mask, state=None, backward="fused"):
            return ar.attention_rnn(params, x, k=None, options=OPTIONS, mask=mask,
                                    initial_state=state, backward=backward, return_state=True)

        first, state = part(xs[:5], jnp.asarray(HOLES[:5]), backward=first_backward)
        second, _ = part(xs[5:], jnp.asarray(HOLES[5:]), state, second_backward)
        np.testing.assert_allclose(jnp.concatenate([first, second]), whole, rtol=1e-12,
                                   atol=1e-14)


def test_under_jit_and_vmap_per_example_and_summed_gradients():
    params, _ = make(seed=5)
    batch = jax.random.normal(jax.random.PRNGKey(6), (4, 13, 3), jnp.float64)
    masks = jnp.asarray(np.stack([HOLES, np.ones(13, bool), HOLES[::-1], np.arange(13) > 3]))

    def loss(backward, p, x, mask):
        return jnp.sum(jnp.sin(ar.attention_rnn(p, x, k=None, options=OPTIONS, mask=mask,
                                                backward=backward)))

    for backward in ("fused", "autodiff"):
        per_example = jax.jit(jax.vmap(jax.grad(partial(loss, backward), (0, 1)),
                                       (None, 0, 0)))(params, batch, masks)
        summed = jax.jit(jax.grad(lambda p, backward=backward: jnp.sum(jax.vmap(
            partial(loss, backward), (None, 0, 0))(p, batch, masks))))(params)
        if backward == "fused":
            fused = per_example, summed
    assert_tree_allclose(fused, (per_example, summed), rtol=1e-9, atol=1e-12)
    assert_tree_allclose(fused[1], jax.tree.map(lambda g: g.sum(0), fused[0][0]), rtol=1e-12)


def test_float32_over_a_long_sequence_matches_float64():
    """No running maximum: over 3,000 steps the never-forgetting head's sum grows with T and
    the fastest one's terms fall far below e^-10, in float32 as in float64."""
    params, xs = make(seed=7, T=3000, scale=3.0)
    small = jax.tree.map(lambda w: w.astype(jnp.float32), (params, xs))
    hs32, state = ar.attention_rnn(*small, k=None, options=OPTIONS, backward="fused",
                                   return_state=True)
    hs64 = ar.attention_rnn(params, xs, k=None, options=OPTIONS)
    assert np.all(np.isfinite(np.asarray(hs32)))
    assert np.all(np.isfinite(np.asarray(state.denominator)))
    np.testing.assert_allclose(hs32, hs64, rtol=1e-3, atol=1e-4)


def test_it_stores_less_a_step_than_autodiff_and_refuses_forward_mode():
    """Nine numbers a channel and step in the loop (the state, the input term's two,
    ``1 / (E_0 + r D)``, the query, key and value, the term and its slope), where autodiff
    stores thirteen here; both store the same before it (the input projections)."""
    params, xs = make(seed=8, T=64)

    def residual_floats(backward, T):
        _, vjp = jax.vjp(lambda p: ar.attention_rnn(p, xs[:T], k=None, options=OPTIONS,
                                                    backward=backward), params)
        return sum(x.size for x in jax.tree.leaves(vjp) if hasattr(x, "size"))

    per_step = {b: (residual_floats(b, 64) - residual_floats(b, 32)) / 32
                for b in ("fused", "autodiff")}
    assert per_step["fused"] < per_step["autodiff"]
    with pytest.raises(TypeError, match="backward='autodiff'"):
        jax.jvp(lambda p: ar.attention_rnn(p, xs, k=None, options=OPTIONS, backward="fused"),
                (params,), (params,))


def test_return_attention_and_remat_chunk_run_the_loops_own_pass():
    """Where the kernel does not apply, backward="fused" is the weight-tapped pass: the same
    numbers."""
    params, xs = make(seed=9)

    def loss(backward, remat, attention, p):
        out = ar.attention_rnn(p, xs, k=None, options=OPTIONS, backward=backward,
                               remat_chunk=remat, return_attention=attention)
        hs, a = out if attention else (out, 0.0)
        return jnp.sum(jnp.sin(hs)) + jnp.sum(a**2)

    for remat, attention in ((4, False), (None, True)):
        assert_tree_allclose(jax.grad(partial(loss, "fused", remat, attention))(params),
                             jax.grad(partial(loss, "autodiff", None, attention))(params),
                             rtol=1e-9, atol=1e-12)
