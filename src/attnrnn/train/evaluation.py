"""Evaluation on a fixed set: the held-out set of quick runs, what "solved" means, and a
classifier's predictions and confusion matrix."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from attnrnn.train.losses import batch_outputs

__all__ = ["HELDOUT_KEY", "HELDOUT_SIZE", "heldout_set", "evaluate", "predict", "confusion",
           "solved", "check_batch"]

HELDOUT_KEY = 2**31 - 1  # the held-out set never shares a key with training data
HELDOUT_SIZE = 2560  # the held-out set; "solved" allows one error per this many sequences


def heldout_set(task, size=HELDOUT_SIZE):
    """The fixed held-out batch: the same sequences for every run and seed."""
    return task.sample(jax.random.PRNGKey(HELDOUT_KEY), size)


def solved(errors, size) -> bool:
    """The held-out protocol's rule: at most one error per 2,560 sequences."""
    return errors <= size / HELDOUT_SIZE


EVAL_BATCH = HELDOUT_SIZE  # sequences per evaluation call: the held-out set in one


@functools.partial(jax.jit, static_argnames=("model", "tolerance"))
def _evaluate(params, data, *, model, tolerance=None):
    """Loss, errors and what they are counted over (sequences, or valid steps) on one batch."""
    loss, aux = model.loss(params, *data, tolerance=tolerance)
    errors, count = aux["errors"], aux["count"]
    if tolerance is not None and "abs_error" in aux:
        errors, count = jnp.sum(aux["abs_error"] >= tolerance), aux["abs_error"].shape[0]
    return loss, errors, count


def evaluate(params, data, *, model, tolerance=None, batch_size=EVAL_BATCH):
    """``{"loss", "accuracy", "errors"}`` (``errors`` an int count) of ``model`` (a
    [`Model`][attnrnn.train.models.Model]) on ``data = (xs, labels, mask)`` (``mask`` may be
    left out: every step counts).

    Errors are wrong predictions, counted over sequences, or over valid steps for per-step
    tasks, and the accuracy is ``1 - errors / count`` over the same units; for a regression,
    sequences with ``|y - t| >= tolerance`` (default 0.04). With a ``tolerance`` a
    classifier's errors are the sequences not processed correctly under ABS(tolerance), as
    the 1997 test counts them. The data is evaluated ``batch_size`` sequences at a time (so a
    large test split fits in memory; the loss is the mean over every unit, whatever the
    batching) — one compilation per distinct batch shape, the last partial batch included.
    """
    data = check_batch(data)
    size = data[0].shape[0]
    if size <= batch_size:
        loss, errors, count = _evaluate(params, data, model=model, tolerance=tolerance)
    else:
        parts = [_evaluate(params, jax.tree.map(lambda a, i=i: a[i:i + batch_size], data),
                           model=model, tolerance=tolerance)
                 for i in range(0, size, batch_size)]
        loss_sum = sum(float(loss) * float(count) for loss, _, count in parts)
        errors = jnp.asarray(sum(int(errors) for _, errors, _ in parts))
        count = jnp.asarray(sum(float(count) for _, _, count in parts))
        loss = jnp.asarray(loss_sum / float(count))
    # a count: aux sums 0/1 floats, exact as integers far beyond any test split
    errors = jnp.asarray(jnp.round(errors), jnp.int32)
    return {"loss": loss, "accuracy": 1 - errors / count, "errors": errors}


@functools.partial(jax.jit, static_argnames=("model",))
def _predicted_classes(params, xs, mask, *, model):
    return jnp.argmax(batch_outputs(model.apply, params, xs, mask), axis=-1)


def predict(params, xs, *, model, mask=None, names=None, batch_size=EVAL_BATCH):
    """The classes a classifier ``model`` predicts (the argmax of its outputs) for ``xs
    (N, T, n)``, ``batch_size`` sequences at a time: a numpy array ``(N,)``, or ``(N, T)`` for
    a per-step model (``-1`` on the steps ``mask`` leaves out); with ``names`` (e.g. a task's
    ``class_names``) the classes' names instead (``""`` on masked steps).
    """
    if getattr(model, "regression", False):
        raise ValueError("predict gives a classifier's classes; a regression model's "
                         "prediction is model.predict(model.apply(params, xs))")
    xs = jnp.asarray(xs)
    mask = None if mask is None else jnp.asarray(mask)
    parts = [_predicted_classes(params, xs[i:i + batch_size],
                                None if mask is None else mask[i:i + batch_size], model=model)
             for i in range(0, xs.shape[0], batch_size)]
    classes = np.concatenate([np.asarray(c) for c in parts])
    if mask is not None and classes.ndim == 2:
        classes = np.where(np.asarray(mask), classes, -1)
    if names is None:
        return classes
    return np.where(classes >= 0, np.asarray(list(names) + [""])[classes], "")


def confusion(params, data, *, model, batch_size=EVAL_BATCH):
    """The confusion matrix of a classifier ``model`` on ``data = (xs, labels[, mask])``: a
    numpy ``(C, C)`` int array counting sequences (or valid steps, for per-step labels) of
    true class ``i`` predicted as ``j`` at ``[i, j]``."""
    xs, labels, *mask = check_batch(data)
    mask = mask[0] if mask else None
    predicted = predict(params, xs, model=model, mask=mask, batch_size=batch_size)
    one = (xs[0],) if mask is None else (xs[0], mask[0])
    classes = jax.eval_shape(model.apply, params, *one).shape[-1]
    labels = np.asarray(labels)
    counted = predicted >= 0
    matrix = np.zeros((classes, classes), np.int64)
    np.add.at(matrix, (labels[counted], predicted[counted]), 1)
    return matrix


def check_batch(batch) -> tuple:
    """``batch`` as a tuple of ``(xs, labels)`` (every step valid: the recurrences run
    without a mask) or ``(xs, labels, mask)``."""
    batch = tuple(batch)
    if len(batch) not in (2, 3):
        raise ValueError(f"a batch must be (xs, labels) or (xs, labels, mask), got "
                         f"{len(batch)} arrays")
    return batch
