"""Evaluation on a fixed set: predictions and the confusion matrix agree with the loss's
counts and with the model's outputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attnrnn import train as training
from attnrnn.train import data, tasks


def test_predictions_and_confusion_agree_with_evaluate():
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((t, 2)) for t in rng.integers(2, 9, 50)]
    names = ["a", "b", "c"]
    task = data.array_task((xs, [names[i % 3] for i in range(50)]),
                           (xs[:23], [names[i % 3] for i in range(23)]))
    model = training.model_for("gated", task, 8)
    params = model.init(jax.random.PRNGKey(0))
    xs, labels, mask = task.test
    outputs = jax.vmap(lambda x, m: model.apply(params, x, m))(xs, mask)
    expected = np.asarray(jnp.argmax(outputs, -1))
    predicted = training.predict(params, xs, mask=mask, model=model, batch_size=5)
    np.testing.assert_array_equal(predicted, expected)
    np.testing.assert_array_equal(training.predict(params, xs, mask=mask, model=model,
                                                   names=task.class_names),
                                  np.array(names)[expected])
    matrix = training.confusion(params, task.test, model=model, batch_size=7)
    assert matrix.shape == (3, 3) and matrix.sum() == 23
    np.testing.assert_array_equal(matrix.sum(1), np.bincount(np.asarray(labels), minlength=3))
    np.testing.assert_array_equal(matrix.sum(0), np.bincount(expected, minlength=3))
    errors = int(training.evaluate(params, task.test, model=model)["errors"])
    assert np.trace(matrix) == 23 - errors


def test_per_step_predictions_leave_masked_steps_out():
    task = tasks.make_task("echo", length=16)
    model = training.model_for("gated", task, 8)
    params = model.init(jax.random.PRNGKey(0))
    xs, labels, mask = task.sample(jax.random.PRNGKey(1), 9)
    mask = mask.at[:, :3].set(False)
    predicted = training.predict(params, xs, mask=mask, model=model)
    assert predicted.shape == (9, 16) and (predicted[:, :3] == -1).all()
    named = training.predict(params, xs, mask=mask, model=model, names=["x", "y"])
    assert (named[:, :3] == "").all() and set(np.unique(named[:, 3:])) <= {"x", "y"}
    matrix = training.confusion(params, (xs, labels, mask), model=model)
    assert matrix.sum() == int(mask.sum())
    errors = int(training.evaluate(params, (xs, labels, mask), model=model)["errors"])
    assert np.trace(matrix) == int(mask.sum()) - errors


def test_a_regression_has_no_classes_to_predict():
    task = tasks.make_task("adding", length=30)
    model = training.model_for("gated", task, 4)
    with pytest.raises(ValueError, match="predict gives a classifier's classes"):
        training.predict(model.init(jax.random.PRNGKey(0)), task.sample(
            jax.random.PRNGKey(1), 2)[0], model=model)
