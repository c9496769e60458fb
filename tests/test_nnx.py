"""The Flax NNX modules: parameters as nnx.Param (counted, converted both ways), the same
outputs as the pure functions, and a small NNX model with each module learns under
nnx.Optimizer and nnx.jit (the optimizer really updates the recurrent weights)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

nnx = pytest.importorskip("flax.nnx")

import attnrnn as ar  # noqa: E402
from attnrnn.nnx import AttentionRNN, Conv, GatedRNN  # noqa: E402
from helpers import assert_tree_allclose, assert_tree_equal  # noqa: E402

MODULES = {
    "gated": lambda: GatedRNN(3, 8, rngs=nnx.Rngs(0)),
    "attention:2": lambda: AttentionRNN(3, 8, k=2, rngs=nnx.Rngs(0)),
    "attention:inf": lambda: AttentionRNN(3, 8, k=None, rngs=nnx.Rngs(0),
                                          options=ar.AttentionOptions(nonexpansive=True, score_bound=0.7,
                                                                      value_bound=2.0)),
    "conv": lambda: Conv(3, 4, 3, rngs=nnx.Rngs(0)),
}


@pytest.mark.parametrize("name", MODULES)
def test_parameters_count_and_convert_both_ways(name):
    module = MODULES[name]()
    params = module.params
    state = nnx.state(module, nnx.Param)
    assert sum(a.size for a in jax.tree.leaves(state)) == sum(a.size for a in params)
    doubled = jax.tree.map(lambda a: 2 * a, params)
    module.load(doubled)
    assert_tree_equal(module.params, doubled)
    with pytest.raises(ValueError, match=f"params.{params._fields[0]} must have shape"):
        module.load(params._replace(**{params._fields[0]: jnp.zeros((1,))}))


def test_modules_equal_the_pure_functions():
    xs = jax.random.normal(jax.random.PRNGKey(1), (2, 5, 3))
    mask = jnp.arange(5)[None, :] >= jnp.array([[0], [2]])
    gated = MODULES["gated"]()
    hs, final = gated(xs, mask=mask, return_state=True)
    expected = jax.vmap(lambda x, m: ar.gated_rnn(gated.params, x, mask=m,
                                                  return_state=True))(xs, mask)
    assert_tree_allclose((hs, final), expected, rtol=1e-6)
    attention = MODULES["attention:inf"]()
    assert_tree_allclose(attention(xs, reverse=True), jax.vmap(lambda x: ar.attention_rnn(
        attention.params, x, k=None, reverse=True, options=attention.options))(xs), rtol=1e-6)
    headed = AttentionRNN(3, 8, k=None, rngs=nnx.Rngs(0), options=ar.AttentionOptions(
        nonexpansive=True, heads=4, recency=(0.0, 0.5, 1.0, 2.0)))
    hs, a, final = headed(xs, mask=mask, return_attention=True, return_state=True)
    assert a.shape == (2, 5, 5, 4) and final.max.shape == (2, 4)
    assert_tree_allclose((hs, a, final), jax.vmap(lambda x, m: ar.attention_rnn(
        headed.params, x, k=None, mask=m, options=headed.options, return_attention=True,
        return_state=True))(xs, mask), rtol=1e-6)
    conv = MODULES["conv"]()
    x = jax.random.normal(jax.random.PRNGKey(2), (2, 3, 9))
    w, b = conv.params
    assert_tree_allclose(conv(x), jax.vmap(lambda x: ar.conv(x, w) + b[:, None])(x), rtol=1e-6)


class Classifier(nnx.Module):
    def __init__(self, body, features, classes, rngs):
        self.body = body
        self.head = nnx.Linear(features, classes, rngs=rngs)

    def __call__(self, xs):
        h = self.body(xs)
        return self.head(h[:, -1] if h.ndim == 3 and not isinstance(self.body, Conv)
                         else h.reshape(h.shape[0], -1))


def toy_batch(key, batch=64, T=8):
    """Class 1 when the first feature of the last two steps sums to more than 0 (a short
    memory: the step before the last must be kept one step)."""
    xs = jax.random.normal(key, (batch, T, 3))
    return xs, (xs[:, -1, 0] + xs[:, -2, 0] > 0).astype(jnp.int32)


@pytest.mark.parametrize("name", MODULES)
def test_a_small_nnx_model_learns(name):
    """300 adam steps of 64 sequences: measured held-out accuracy 0.96 (gated), 0.92
    (AttentionRNN(2)), 0.76 (AttentionRNN(∞), bounded; 0.81 after 600), 0.99 (conv); chance
    is 0.5."""
    rngs = nnx.Rngs(1)
    body = MODULES[name]()
    features = 4 * 6 if name == "conv" else 8
    model = Classifier(body, features, 2, rngs)
    optimizer = nnx.Optimizer(model, optax.adam(3e-2), wrt=nnx.Param)

    def prepare(xs):  # the conv reads the sequence as 3 channels over 8 positions
        return jnp.swapaxes(xs, 1, 2) if name == "conv" else xs

    @nnx.jit
    def step(model, optimizer, xs, labels):
        def loss(model):
            logits = model(prepare(xs))
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

        value, grads = nnx.value_and_grad(loss)(model)
        optimizer.update(model, grads)
        return value

    before = jax.tree.map(jnp.copy, body.params)
    for i in range(300):
        step(model, optimizer, *toy_batch(jax.random.PRNGKey(i)))
    changed = [not np.array_equal(a, b) for a, b in zip(before, body.params)]
    assert all(changed), "the optimizer must update every weight of the module"
    xs, labels = toy_batch(jax.random.PRNGKey(10_000), batch=512)
    accuracy = float((model(prepare(xs)).argmax(-1) == labels).mean())
    assert accuracy > 0.7, accuracy  # chance is 0.5
