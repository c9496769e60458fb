import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attnrnn.train import cells, model_spec, models, tasks

SPECS = ["gated", "gated,offset=0", "lstm", "gru", "attention:0", "attention:2",
         "attention:inf"]


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
    model = models.make_model("attention:2", input_size=27, hidden_size=8, outputs=27,
                              per_step=True)
    params = model.init(jax.random.PRNGKey(0))
    xs, labels, mask = tasks.delayed_letters(jax.random.PRNGKey(0), 4, length=10)
    logits = jax.jit(jax.vmap(model.apply, in_axes=(None, 0, 0)))(params, xs, mask)
    assert logits.shape == (4, 10, 27)
    grads = jax.grad(lambda p: model.loss(p, xs, labels, mask)[0])(params)
    assert isinstance(grads, models.SequenceModelParams)
    assert all(bool(jnp.isfinite(g).all()) for g in jax.tree.leaves(grads))


def test_model_is_built_once_from_real_arguments():
    """A model string and the entry it names build the same model; the config is captured."""
    task = tasks.make_task("temporal-order", level="easy")
    from_string = models.model_for("attention:inf,raw", task, 8)
    by_hand = models.make_model(cells.Attention(None, model_spec.RAW), input_size=8,
                                hidden_size=8, outputs=4)
    assert from_string.name == by_hand.name == "attention:inf,raw"
    # a value: equal and hashable by what it is, so jit caches one compilation per model
    assert from_string == by_hand and hash(from_string) == hash(by_hand)
    assert by_hand != by_hand.__class__(**{**vars(by_hand), "hidden_size": 9})
    assert len({from_string, by_hand, models.model_for("attention:inf", task, 8)}) == 2
    # entries without options are equal only to themselves (a tuple () would equal any)
    assert len({models.make_model(cell, input_size=8, hidden_size=8, outputs=4)
                for cell in ("lstm", "gru", cells.LSTM(), cells.GRU())}) == 2
    key = jax.random.PRNGKey(0)
    xs = task.sample(key, 1)[0][0]
    params = by_hand.init(key)
    np.testing.assert_array_equal(from_string.apply(params, xs), by_hand.apply(params, xs))
    with pytest.raises(ValueError, match="model must be"):
        models.make_model("transformer", input_size=8, hidden_size=8, outputs=4)


def test_bidirectional_stacked_states_and_readouts():
    """Each layer runs forward and reversed, concatenated; the next layer reads tanh of
    them; the readout takes every state (flattened) or the last valid state."""
    from attnrnn.gru import gru

    xs = jax.random.normal(jax.random.PRNGKey(0), (9, 2), jnp.float64)
    kwargs = dict(input_size=2, hidden_size=3, outputs=4, layers=2, bidirectional=True,
                  dtype=jnp.float64)
    every = models.make_model("gru", readout="all", length=9, **kwargs)
    last = models.make_model("gru", **kwargs)
    params = every.init(jax.random.PRNGKey(1))
    (f1, b1), (f2, b2) = params.cell
    h1 = jnp.concatenate([gru(f1, xs), gru(b1, xs, reverse=True)], -1)
    h2_forward, h2_backward = gru(f2, jnp.tanh(h1)), gru(b2, jnp.tanh(h1), reverse=True)
    h2 = jnp.concatenate([h2_forward, h2_backward], -1)
    W, b = params.readout
    assert W.shape == (4, 9 * 6)
    np.testing.assert_allclose(every.apply(params, xs), W @ h2.reshape(-1) + b, rtol=1e-12)
    params = last.init(jax.random.PRNGKey(1))
    (f1, b1), (f2, b2) = params.cell
    h1 = jnp.concatenate([gru(f1, xs), gru(b1, xs, reverse=True)], -1)
    final = jnp.concatenate([gru(f2, jnp.tanh(h1))[-1], gru(b2, jnp.tanh(h1), reverse=True)[0]])
    np.testing.assert_allclose(last.apply(params, xs), params.readout.W @ final
                               + params.readout.b, rtol=1e-12)


@pytest.mark.parametrize("spec", ["gated", "attention:inf", "lstm", "gru"])
def test_bidirectional_classifier_reads_last_valid_state(spec):
    model = models.model_for(spec, tasks.make_task("temporal-order"), 5, dtype=jnp.float64,
                             layers=2, bidirectional=True)
    params = model.init(jax.random.PRNGKey(2))
    xs, _, mask = tasks.temporal_order(jax.random.PRNGKey(3), 1, level="normal")
    xs = xs.astype(jnp.float64)
    valid = np.asarray(mask[0])
    np.testing.assert_allclose(model.apply(params, xs[0], mask[0]),
                               model.apply(params, xs[0][valid]), rtol=1e-10)
    grads = jax.grad(lambda p: model.loss(p, xs, jnp.array([1]), mask)[0])(params)
    assert all(bool(jnp.isfinite(g).all()) for g in jax.tree.leaves(grads))


def conv_reference(x, w, b, stride, padding):
    """A 1-D cross-correlation by loops, float64: x (C, T), w (F, C, K)."""
    x = np.pad(np.asarray(x, np.float64), ((0, 0), (padding, padding)))
    w = np.asarray(w, np.float64)
    out = (x.shape[1] - w.shape[2]) // stride + 1
    y = np.zeros((w.shape[0], out))
    for f in range(w.shape[0]):
        for r in range(out):
            y[f, r] = np.sum(x[:, r * stride:r * stride + w.shape[2]] * w[f]) + b[f]
    return y


def test_conv_classifier_is_mnist1d_convbase():
    model = models.make_model("conv", input_size=1, hidden_size=25, outputs=10, length=40,
                              dtype=jnp.float64)
    params = model.init(jax.random.PRNGKey(0))
    assert sum(w.size for w in jax.tree.leaves(params)) == 5210  # ConvBase's weights
    xs = jax.random.normal(jax.random.PRNGKey(1), (40, 1), jnp.float64)
    h = np.asarray(xs).T
    for (w, b), (_, stride, padding) in zip(params.cell, cells.CONV_LAYERS):
        h = np.maximum(conv_reference(h, w, b, stride, padding), 0)
    assert h.shape == (25, 5)
    expected = np.asarray(params.readout.W) @ h.reshape(-1) + np.asarray(params.readout.b)
    np.testing.assert_allclose(jax.jit(model.apply)(params, xs), expected, rtol=1e-10)
    with pytest.raises(ValueError, match="conv is a sequence classifier"):
        models.make_model("conv", input_size=1, hidden_size=4, outputs=2, length=40,
                          per_step=True)
    with pytest.raises(ValueError, match="conv needs sequences of one length"):
        models.make_model("conv", input_size=1, hidden_size=4, outputs=2)
    with pytest.raises(ValueError, match="conv needs sequences of at least 3 steps, got "
                                         "length 2"):
        models.make_model("conv", input_size=1, hidden_size=4, outputs=2, length=2)
    with pytest.raises(TypeError, match="length must be a Python int"):
        models.make_model("conv", input_size=1, hidden_size=4, outputs=2, length=40.5)
    assert models.make_model("conv", input_size=1, hidden_size=4, outputs=2,
                             length=3).init(jax.random.PRNGKey(0)).readout.W.shape == (2, 4)
    for architecture in ({"layers": 2}, {"bidirectional": True}, {"readout": "all"}):
        with pytest.raises(ValueError, match="layers, bidirectional and readout are for the "
                                             "recurrences"):
            models.make_model("conv", input_size=1, hidden_size=4, outputs=2, length=40,
                              **architecture)


def test_paper_sized_models_have_the_papers_weights():
    """MNIST-1D's GRUBase (bidirectional GRU, hidden 6, readout over 40 states) has 5,134
    weights; the same shape of gated RNN (with its bias input) 4,930."""
    def count(cell, hidden, **kwargs):
        model = models.make_model(cell, input_size=1, hidden_size=hidden, outputs=10, length=40,
                                  **kwargs)
        return sum(w.size for w in jax.tree.leaves(model.init(jax.random.PRNGKey(0))))

    assert count("gru", 6, bidirectional=True, readout="all") == 5134
    assert count("gated", 6, bidirectional=True, readout="all") == 4930
    with pytest.raises(ValueError, match="readout all needs sequences of one length"):
        models.make_model("gru", input_size=1, hidden_size=6, outputs=10, readout="all")


def test_position_is_one_more_input():
    """``position`` runs the recurrence on ``[x, step position in [-1, 1]]``."""
    xs = jax.random.normal(jax.random.PRNGKey(0), (7, 2), jnp.float64)
    with_position = models.make_model(cells.Attention(), input_size=2, hidden_size=4,
                                      outputs=3, position=True, dtype=jnp.float64)
    plain = models.make_model(cells.Attention(), input_size=3, hidden_size=4, outputs=3,
                              dtype=jnp.float64)
    params = with_position.init(jax.random.PRNGKey(1))
    assert params.cell.Q_x.shape == (4, 3) and with_position.name.endswith(",position")
    steps = np.linspace(-1, 1, 7)[:, None]
    np.testing.assert_allclose(with_position.apply(params, xs),
                               plain.apply(params, jnp.concatenate([xs, steps], -1)),
                               rtol=1e-12)
    with pytest.raises(ValueError, match="position is an input of the recurrences"):
        models.make_model("conv", input_size=1, hidden_size=4, outputs=2, length=40,
                          position=True)
    with pytest.raises(ValueError, match="position is an input of the recurrences, not of "
                                         "lstm1997"):
        models.make_model("lstm1997", input_size=1, hidden_size=4, outputs=2, position=True)


def test_make_model_takes_an_entry_or_its_string():
    """make_model takes a cell's entry or its model string; the cell's name without lags says
    how to give them."""
    assert (models.make_model("attention:inf", input_size=3, hidden_size=4, outputs=2)
            == models.make_model(cells.Attention(None), input_size=3, hidden_size=4, outputs=2))
    with pytest.raises(ValueError, match=r"the cell 'attention' is 'attention:K' or "
                                         r"'attention:inf' here"):
        models.make_model("attention", input_size=3, hidden_size=4, outputs=2)
    with pytest.raises(ValueError, match="options.heads=3 must divide the state size m=4"):
        models.make_model("attention:inf,heads=3", input_size=3, hidden_size=4, outputs=2)
