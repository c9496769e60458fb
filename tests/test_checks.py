"""Configuration is static: traced under jax.jit, it is refused with a message that says how
to mark it static."""

import jax
import jax.numpy as jnp
import pytest

import attnrnn as ar

XS = jnp.ones((5, 3))
GATED = ar.gated_rnn_init(jax.random.PRNGKey(0), 3, 4)
ATTENTION = ar.attention_rnn_init(jax.random.PRNGKey(0), 3, 4, k=2)

CASES = {
    "unroll": lambda v: ar.gated_rnn(GATED, XS, unroll=v),
    "reverse": lambda v: ar.gated_rnn(GATED, XS, reverse=v),
    "remat_chunk": lambda v: ar.gated_rnn(GATED, XS, remat_chunk=v),
    "return_state": lambda v: ar.gated_rnn(GATED, XS, return_state=v),
    "k": lambda v: ar.attention_rnn(ATTENTION, XS, k=v),
    "return_attention": lambda v: ar.attention_rnn(ATTENTION, XS, k=2, return_attention=v),
    "stride": lambda v: ar.conv(jnp.ones((1, 8)), jnp.ones((1, 1, 3)), stride=v),
    "dilation": lambda v: ar.conv(jnp.ones((1, 8)), jnp.ones((1, 1, 3)), dilation=v),
}
VALUES = {"reverse": True, "return_state": True, "return_attention": True}


@pytest.mark.parametrize("name", CASES)
def test_traced_static_argument_says_how_to_mark_it(name):
    call = CASES[name]
    with pytest.raises(TypeError, match=rf"{name} must be a static Python value.*"
                                        rf"static_argnames=\('{name}',\)"):
        jax.jit(call)(VALUES.get(name, 2))
    call(VALUES.get(name, 2))  # the same value, static, runs


def test_the_readme_way_runs():
    run = jax.jit(ar.gated_rnn, static_argnames=("unroll", "reverse"))
    assert run(GATED, XS, unroll=2, reverse=True).shape == (5, 4)
