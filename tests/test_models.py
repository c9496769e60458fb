import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attnrnn import models, tasks

SPECS = ["gated", "gated,offset=0", "lstm", "attention:0", "attention:2", "attention:inf"]


@pytest.mark.parametrize("spec", SPECS)
def test_fresh_classifier_is_near_uniform(spec):
    params = models.model_init(jax.random.PRNGKey(0), spec, input_size=8, hidden_size=32,
                               num_classes=4)
    xs, labels, mask = tasks.temporal_order(jax.random.PRNGKey(1), 4096, level="moderate")
    loss, aux = jax.jit(lambda p: models.batch_loss(p, xs, labels, mask, spec=spec))(
        params)
    assert abs(float(loss) - math.log(4)) < 0.05
    assert abs(float(aux["accuracy"]) - 0.25) < 0.05


@pytest.mark.parametrize("spec", SPECS)
def test_classifier_reads_last_valid_state(spec):
    params = models.model_init(jax.random.PRNGKey(2), spec, input_size=8, hidden_size=6,
                               num_classes=4, dtype=jnp.float64)
    xs, _, mask = tasks.temporal_order(jax.random.PRNGKey(3), 2, level="normal")
    xs = xs.astype(jnp.float64)
    valid = np.asarray(mask[0])
    padded = models.model_apply(params, xs[0], mask[0], spec=spec)
    unpadded = models.model_apply(params, xs[0][valid], spec=spec)
    np.testing.assert_allclose(padded, unpadded, rtol=1e-10)


def test_per_step_logits_jit_vmap_grad():
    params = models.model_init(jax.random.PRNGKey(0), "attention:2", input_size=27,
                               hidden_size=8, num_classes=27)
    xs, labels, mask = tasks.delayed_letters(jax.random.PRNGKey(0), 4, length=10)
    logits = jax.jit(jax.vmap(lambda x, m: models.model_apply(
        params, x, m, spec="attention:2", per_step=True)))(xs, mask)
    assert logits.shape == (4, 10, 27)
    grads = jax.grad(lambda p: models.batch_loss(p, xs, labels, mask, spec="attention:2",
                                                 per_step=True)[0])(params)
    assert isinstance(grads, models.SequenceModelParams)
    assert all(bool(jnp.isfinite(g).all()) for g in jax.tree.leaves(grads))


def test_parse_model():
    assert models.parse_model("attention:inf") == models.ModelSpec("attention", None)
    assert str(models.parse_model("attention:3")) == "attention:3"
    assert models.parse_model("gated").gate_offset == 2.0 and str(models.parse_model("gated")) == "gated"
    assert models.parse_model("gated,offset=0").gate_offset == 0.0
    assert str(models.parse_model("gated,offset=0.5")) == "gated,offset=0.5"
    for bad in ["attention", "attention:-1", "gru", "gated:2", "attention:x", "gated,offset=x",
                "gated,norm", "lstm,offset=1"]:
        with pytest.raises(ValueError, match="model must be"):
            models.parse_model(bad)
    for bad in ["attention:2,offset=1", "attention:inf,scale=x", "attention:2,cap"]:
        with pytest.raises(ValueError, match="model option .* is not one of"):
            models.parse_model(bad)
