"""A batch's loss and the protocols' measures of it, for any model's ``apply`` and ``predict``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

__all__ = ["batch_loss", "batch_outputs"]

# The adding problem's ABS(0.04): a regression's prediction is right within this.
TOLERANCE = 0.04


def batch_outputs(apply, params, xs, mask=None):
    """``apply(params, x[, m])`` of one sequence mapped over the batch ``xs (B, T, n)``
    (without a mask the recurrences run unmasked)."""
    if mask is None:
        return jax.vmap(lambda x: apply(params, x))(xs)
    return jax.vmap(lambda x, m: apply(params, x, m))(xs, mask)


def batch_loss(apply, predict, params, xs, labels, mask=None, tolerance=None, *,
               squared_error=False, per_step=False, regression=False):
    """Mean loss and accuracy over a batch (over valid steps for per-step tasks), with each
    sequence's error measures for the 1997 stopping rule.

    The loss is the cross-entropy of a softmax classifier, or the paper's squared error
    ``E = ½ Σ_j (y_j - t_j)²`` of the predictions (``squared_error``: the 1997 LSTM's
    logistic outputs; always for a ``regression``). A prediction is right when its class is
    the argmax (classification), or when ``|y - t| < tolerance`` (regression; default 0.04,
    the adding problem's ABS(0.04)).

    Args:
      apply: ``apply(params, xs, mask=None) -> outputs`` on one sequence.
      predict: ``predict(outputs)``: the prediction in the units of the targets.
      params: the model's parameters.
      xs: ``(B, T, n)`` inputs.
      labels: ``(B,)`` class indices or values, ``(B, T)`` for a per-step task.
      mask: ``(B, T)`` valid steps; None: every step valid (the recurrences then run without
        one).
      tolerance: a regression's tolerance.
      squared_error, per_step, regression: the model's kind (above).

    Returns:
      ``(loss, aux)``: ``aux["accuracy"]``, ``aux["errors"]`` (wrong predictions),
      ``aux["count"]`` (what they are counted over: sequences, or valid steps) and, for
      sequence tasks, per sequence ``aux["squared_error"]`` (``E``, on probabilities for a
      classifier) and ``aux["abs_error"]`` (``max_j |y_j - t_j|``).
    """
    outputs = batch_outputs(apply, params, xs, mask)
    y = predict(outputs)
    targets = labels[..., None] if regression else jax.nn.one_hot(labels, outputs.shape[-1],
                                                                   dtype=y.dtype)
    squared = 0.5 * jnp.sum((y - targets) ** 2, axis=-1)
    abs_error = jnp.max(jnp.abs(y - targets), axis=-1)
    if regression:
        losses, wrong = squared, abs_error >= (TOLERANCE if tolerance is None else tolerance)
    else:
        losses = (squared if squared_error else
                  optax.softmax_cross_entropy_with_integer_labels(outputs, labels))
        wrong = jnp.argmax(outputs, axis=-1) != labels
    weights = (mask.astype(losses.dtype) if per_step and mask is not None else
               jnp.ones_like(losses))
    total = jnp.sum(weights)
    errors = jnp.sum(wrong * weights)
    aux = {"accuracy": 1 - errors / total, "errors": errors, "count": total}
    if not per_step:
        aux.update(squared_error=squared, abs_error=abs_error)
    return jnp.sum(losses * weights) / total, aux
