import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attnrnn.train import models, tasks

SPECS = ["gated", "gated,offset=0", "lstm", "attention:0", "attention:2", "attention:inf"]


@pytest.mark.parametrize("spec", SPECS)
def test_fresh_classifier_is_near_uniform(spec):
    model = models.model_for(spec, tasks.make_task("temporal-order"), 32)
    params = model.init(jax.random.PRNGKey(0))
    xs, labels, mask = tasks.temporal_order(jax.random.PRNGKey(1), 4096, level="moderate")
    loss, aux = jax.jit(lambda p: model.loss(p, xs, labels, mask))(params)
    assert abs(float(loss) - math.log(4)) < 0.05
    assert abs(float(aux["accuracy"]) - 0.25) < 0.05


@pytest.mark.parametrize("spec", SPECS)
def test_classifier_reads_last_valid_state(spec):
    model = models.model_for(spec, tasks.make_task("temporal-order"), 6, dtype=jnp.float64)
    params = model.init(jax.random.PRNGKey(2))
    xs, _, mask = tasks.temporal_order(jax.random.PRNGKey(3), 2, level="normal")
    xs = xs.astype(jnp.float64)
    valid = np.asarray(mask[0])
    padded = model.apply(params, xs[0], mask[0])
    unpadded = model.apply(params, xs[0][valid])
    np.testing.assert_allclose(padded, unpadded, rtol=1e-10)


def test_per_step_logits_jit_vmap_grad():
    model = models.make_model("attention", k=2, input_size=27, hidden_size=8, outputs=27,
                              per_step=True)
    params = model.init(jax.random.PRNGKey(0))
    xs, labels, mask = tasks.delayed_letters(jax.random.PRNGKey(0), 4, length=10)
    logits = jax.jit(jax.vmap(model.apply, in_axes=(None, 0, 0)))(params, xs, mask)
    assert logits.shape == (4, 10, 27)
    grads = jax.grad(lambda p: model.loss(p, xs, labels, mask)[0])(params)
    assert isinstance(grads, models.SequenceModelParams)
    assert all(bool(jnp.isfinite(g).all()) for g in jax.tree.leaves(grads))


def test_parse_model():
    assert models.parse_model("attention:inf") == models.ModelSpec("attention", None)
    assert str(models.parse_model("attention:3")) == "attention:3"
    assert models.parse_model("gated").gate_offset == 2.0 and str(models.parse_model("gated")) == "gated"
    assert models.parse_model("gated,offset=0").gate_offset == 0.0
    assert str(models.parse_model("gated,offset=0.5")) == "gated,offset=0.5"
    for text, truncated, logistic in [("lstm1997", False, False),
                                      ("lstm1997,truncated", True, False),
                                      ("lstm1997,logistic", False, True),
                                      ("lstm1997,truncated,logistic", True, True)]:
        spec = models.parse_model(text)
        assert (spec.truncated, spec.logistic) == (truncated, logistic) and str(spec) == text
    assert str(models.parse_model("lstm1997,logistic,truncated")) == "lstm1997,truncated,logistic"
    for bad in ["attention", "attention:-1", "gru", "gated:2", "attention:x", "gated,offset=x",
                "gated,norm", "lstm,offset=1", "lstm1997,raw", "lstm1997,truncated,truncated",
                "lstm1997:2", "lstm,logistic"]:
        with pytest.raises(ValueError, match="model must be"):
            models.parse_model(bad)
    for bad in ["attention:2,offset=1", "attention:inf,scale=x", "attention:2,cap"]:
        with pytest.raises(ValueError, match="model option .* is not one of"):
            models.parse_model(bad)


def test_model_is_built_once_from_real_arguments():
    """The string form and the keyword form build the same model; the config is captured."""
    task = tasks.make_task("temporal-order", level="easy")
    from_string = models.model_for("attention:inf,raw", task, 8)
    by_hand = models.make_model("attention", k=None, options=models.RAW, input_size=8,
                                hidden_size=8, outputs=4)
    assert from_string.name == by_hand.name == "attention:inf,raw"
    key = jax.random.PRNGKey(0)
    xs = task.sample(key, 1)[0][0]
    params = by_hand.init(key)
    np.testing.assert_array_equal(from_string.apply(params, xs), by_hand.apply(params, xs))
    with pytest.raises(ValueError, match="cell must be one of"):
        models.make_model("gru", input_size=8, hidden_size=8, outputs=4)
