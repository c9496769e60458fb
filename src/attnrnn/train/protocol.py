"""The 1997 paper's stopping rule and test protocol (Hochreiter & Schmidhuber 1997, §5).

Training samples every sequence afresh (online). A sequence is processed *correctly* under
ABS(γ) when every output's absolute error at the sequence end is below γ; for a softmax
classifier the outputs are its class probabilities against the one-hot target. Training
stops by ST3(β) when

- the 2,000 most recent training sequences were all processed correctly, and
- the *average training error* is below β.

Our reading of "average training error": the mean, over those same 2,000 most recent
sequences, of each sequence's error ``E = ½ Σ_j (y_j - t_j)²`` at its end — the paper's
objective — measured on the sequence as it was trained on (with the weights before that
sequence's update; in a batch, every sequence of the batch sees the same weights). With
batches the rule is checked after every batch, so training stops after the batch that
completes the run of 2,000. Then the stopped weights are tested on a *fresh* set of 2,560
sequences from a key shared with neither training nor the held-out set; a test error is a
sequence not processed correctly under ABS(γ).

Experiment 6a (temporal order): β = 0.1, γ = 0.3. Adding problem: β = 0.01, γ = 0.04.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["ST3", "StopState", "RULES", "stop_rule", "init_stop", "update_stop", "test_set",
           "TEST_KEY", "TEST_SIZE"]

TEST_KEY = 2**31 - 2  # neither the held-out set's key (2**31 - 1) nor any training seed's
TEST_SIZE = 2560


class ST3(NamedTuple):
    """ST3(β) with ABS(γ) over the ``window`` most recent training sequences."""

    beta: float
    gamma: float
    window: int = 2000


RULES = {"temporal-order": ST3(beta=0.1, gamma=0.3), "adding": ST3(beta=0.01, gamma=0.04)}


def stop_rule(task_name: str) -> ST3:
    """The paper's ST3/ABS values for a task."""
    if task_name not in RULES:
        raise ValueError(f"protocol 1997 is defined for the tasks {sorted(RULES)}, got "
                         f"{task_name!r}")
    return RULES[task_name]


class StopState(NamedTuple):
    """``streak``: correct sequences in a row, up to now; ``errors``: the last ``window``
    sequence errors ``E`` (a ring, written at ``position``); ``stopped_at``: sequences seen
    when ST3 first held (-1 before)."""

    streak: jax.Array
    errors: jax.Array
    position: jax.Array
    stopped_at: jax.Array


def init_stop(rule: ST3) -> StopState:
    return StopState(jnp.zeros((), jnp.int32), jnp.zeros((rule.window,), jnp.float32),
                     jnp.zeros((), jnp.int32), -jnp.ones((), jnp.int32))


def update_stop(rule: ST3, stop: StopState, squared_error, abs_error, sequences_seen):
    """``stop`` after one batch, its sequences in order (``squared_error``: each one's ``E``;
    ``abs_error``: each one's largest output error); ``sequences_seen`` counts this batch."""
    correct = abs_error < rule.gamma
    size = correct.shape[0]
    # After the batch the streak is the run of correct sequences at its end.
    last_wrong = jnp.max(jnp.where(correct, -1, jnp.arange(size)))
    streak = jnp.where(last_wrong < 0, stop.streak + size, size - 1 - last_wrong)
    where = (stop.position + jnp.arange(size)) % rule.window
    errors = stop.errors.at[where].set(squared_error.astype(stop.errors.dtype))
    holds = (streak >= rule.window) & (jnp.mean(errors) < rule.beta)
    stopped_at = jnp.where((stop.stopped_at < 0) & holds, sequences_seen, stop.stopped_at)
    return StopState(streak.astype(jnp.int32), errors, (stop.position + size) % rule.window,
                     stopped_at.astype(jnp.int32))


def test_set(task, size=TEST_SIZE):
    """The fresh test set drawn after training stops (the same for every run)."""
    return task.sample(jax.random.PRNGKey(TEST_KEY), size)
