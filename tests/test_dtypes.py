"""Half precision: every initialiser makes bfloat16/float16 parameters, and the models run
forward and backward in bfloat16 close to float32 on the same (rounded) weights.

Stated tolerance: bfloat16 keeps 8 bits of mantissa (relative spacing 2^-8 ≈ 0.004). Over
the 16 steps here the outputs stay within 2% of the largest float32 output, and every
gradient within 25% of its largest float32 entry: measured (with x64 on, as in this suite)
at most 1.4% for the gated RNN's gradients and 4% for AttentionRNN(∞)'s, but 21% for
AttentionRNN(2)'s query/key maps, whose gradient is a sum of nearly cancelling terms while
the window still holds zero states."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import attnrnn as ar
from attnrnn.gru import gru_init
from attnrnn.lstm import lstm_init
from attnrnn.lstm1997 import lstm1997_init

KEY = jax.random.PRNGKey(0)
INITS = {
    "gated": lambda dtype: ar.gated_rnn_init(KEY, 3, 8, dtype=dtype),
    "attention": lambda dtype: ar.attention_rnn_init(KEY, 3, 8, k=2, dtype=dtype),
    "attention:inf": lambda dtype: ar.attention_rnn_init(KEY, 3, 8, k=None, dtype=dtype),
    "conv": lambda dtype: ar.conv_init(KEY, 3, 4, 3, dtype=dtype),
    "lstm": lambda dtype: lstm_init(KEY, 3, 8, dtype=dtype),
    "gru": lambda dtype: gru_init(KEY, 3, 8, dtype=dtype),
    "lstm1997": lambda dtype: lstm1997_init(KEY, 3, dtype=dtype),
}


@pytest.mark.parametrize("name", INITS)
@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_half_precision_init_is_float32_rounded(name, dtype):
    half, full = INITS[name](dtype), INITS[name](jnp.float32)
    assert type(half) is type(full)
    for a, b in zip(jax.tree.leaves(half), jax.tree.leaves(full), strict=True):
        assert a.dtype == dtype
        np.testing.assert_array_equal(a, b.astype(dtype))  # the same draws, rounded


XS = jax.random.normal(jax.random.PRNGKey(1), (16, 3))
RUNS = {
    "gated fused": lambda p, x: ar.gated_rnn(p, x),
    "gated autodiff": lambda p, x: ar.gated_rnn(p, x, backward="autodiff"),
    "attention:2": lambda p, x: ar.attention_rnn(p, x, k=2),
    "attention:inf fused": lambda p, x: ar.attention_rnn(p, x, k=None, backward="fused"),
}


@pytest.mark.parametrize("name", RUNS)
def test_bfloat16_forward_and_backward_near_float32(name):
    run = RUNS[name]
    half = INITS[name.split()[0].replace(":2", "")](jnp.bfloat16)
    full = jax.tree.map(lambda a: a.astype(jnp.float32), half)  # the same weights

    def loss(params, xs):
        return jnp.sum(jnp.tanh(run(params, xs)))

    results = {}
    for dtype, params in ((jnp.bfloat16, half), (jnp.float32, full)):
        hs = run(params, XS.astype(dtype))
        grads = jax.grad(loss)(params, XS.astype(dtype))
        assert hs.dtype == dtype and {g.dtype for g in jax.tree.leaves(grads)} == {jnp.dtype(dtype)}
        results[dtype] = (hs, *jax.tree.leaves(grads))
    pairs = zip(results[jnp.bfloat16], results[jnp.float32], strict=True)
    for i, (got, want) in enumerate(pairs):  # the outputs first, then each gradient
        scale = float(jnp.abs(want).max())
        np.testing.assert_allclose(np.asarray(got, np.float32), want,
                                   atol=(0.02 if i == 0 else 0.25) * scale)
