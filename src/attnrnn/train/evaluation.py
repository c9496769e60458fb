"""Evaluation on a fixed set: the held-out set of quick runs, and what "solved" means."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

__all__ = ["HELDOUT_KEY", "heldout_set", "evaluate", "solved"]

HELDOUT_KEY = 2**31 - 1  # the held-out set never shares a key with training data


def heldout_set(task, size=2560):
    """The fixed held-out batch: the same sequences for every run and seed."""
    return task.sample(jax.random.PRNGKey(HELDOUT_KEY), size)


def solved(errors, size) -> bool:
    """The held-out protocol's rule: at most one error per 2,560 sequences."""
    return errors <= size / 2560


@functools.partial(jax.jit, static_argnames=("model", "tolerance"))
def evaluate(params, data, *, model, tolerance=None):
    """``{"loss", "accuracy", "errors"}`` of ``model`` (a [`Model`][attnrnn.train.models.Model])
    on ``data = (xs, labels, mask)``.

    Errors are wrong predictions, counted over sequences, or over valid steps for per-step
    tasks; for a regression, sequences with ``|y - t| >= tolerance`` (default 0.04). With a
    ``tolerance`` a classifier's errors are the sequences not processed correctly under
    ABS(tolerance), as the 1997 test counts them.
    """
    loss, aux = model.loss(params, *data, tolerance=tolerance)
    errors = aux["errors"]
    if tolerance is not None and "abs_error" in aux:
        errors = jnp.sum(aux["abs_error"] >= tolerance)
    return {"loss": loss, "accuracy": 1 - errors / data[1].shape[0], "errors": errors}
