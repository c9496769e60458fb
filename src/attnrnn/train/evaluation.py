"""Evaluation on a fixed set: the held-out set of quick runs, and what "solved" means."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

__all__ = ["HELDOUT_KEY", "HELDOUT_SIZE", "heldout_set", "evaluate", "solved", "check_batch"]

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


def check_batch(batch) -> tuple:
    """``batch`` as a tuple of ``(xs, labels)`` (every step valid: the recurrences run
    without a mask) or ``(xs, labels, mask)``."""
    batch = tuple(batch)
    if len(batch) not in (2, 3):
        raise ValueError(f"a batch must be (xs, labels) or (xs, labels, mask), got "
                         f"{len(batch)} arrays")
    return batch
