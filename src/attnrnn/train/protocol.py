"""How a run is evaluated and when it ends: three protocols, each one
[`Protocol`][attnrnn.train.protocol.Protocol] value, so that
[`fit`][attnrnn.train.loop.fit] is one loop for all of them.

- ``heldout`` (generated tasks): a fixed held-out set drawn from its own key, evaluated after
  step 0 and after every chunk; *solved* means at most one error per 2,560 sequences.
- ``test`` (tasks made from arrays): the task's own test split, evaluated the same way; the
  summary reports ``test_accuracy`` and ``test_loss`` on the whole split, and a classifier's
  ``test_confusion`` (``[true][predicted]`` counts) with the ``class_names`` (None: the
  classes are ``0..C-1``).
- ``1997``: the paper's ST3/ABS stopping rule on the training sequences, checked inside the
  jitted step, then a fresh test set (Hochreiter & Schmidhuber 1997, §5), as below.

The 1997 rule. Training samples every sequence afresh (online). A sequence is processed
*correctly* under ABS(γ) when every output's absolute error at the sequence end is below γ;
for a softmax classifier the outputs are its class probabilities against the one-hot target.
Training stops by ST3(β) when

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

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from attnrnn.train.evaluation import HELDOUT_SIZE, confusion, evaluate, heldout_set, solved

__all__ = ["ST3", "StopState", "RULES", "stop_rule", "init_stop", "update_stop", "test_set",
           "TEST_KEY", "TEST_SIZE", "PROTOCOLS", "Protocol", "make_protocol",
           "protocol_name"]

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


PROTOCOLS = ("heldout", "test", "1997")


class Protocol(NamedTuple):
    """One protocol as a value ([`make_protocol`][attnrnn.train.protocol.make_protocol]
    builds them):

    - ``init() -> carried``: what the protocol carries through the jitted steps (the train
      state's ``stop`` field; None when nothing);
    - ``observe(before, after, aux, sequences_seen) -> after``: inside jit after every step,
      given the train states before and after it and the loss's ``aux``;
    - ``tolerance``: the ABS(γ) a step's loss counts errors with (None: the default);
    - ``evaluation``, ``eval_set``: the record prefix (``"heldout"``, ``"test"``) and the
      ``(xs, labels)`` or ``(xs, labels, mask)`` evaluated after step 0 and after every
      chunk (None: none);
    - ``done(state, record) -> reason or None``: on the host after every chunk, given the
      chunk's last record;
    - ``report(state, history, model) -> dict``: the protocol's fields of ``summary.json``.
    """

    name: str
    init: Callable
    observe: Callable
    tolerance: float | None
    evaluation: str | None
    eval_set: tuple | None
    done: Callable
    report: Callable


def _unchanged(before, after, aux, seen):
    return after


def _evaluations(history, prefix):
    """The records holding an evaluation, and the fields the summary reports of it."""
    evaluated = [r for r in history if f"{prefix}_accuracy" in r]
    initial = evaluated[0] if evaluated and evaluated[0]["step"] == 0 else {}
    last = evaluated[-1] if evaluated else {}
    return evaluated, {f"{prefix}_accuracy": last.get(f"{prefix}_accuracy"),
                       f"{prefix}_loss": last.get(f"{prefix}_loss"),
                       "initial_loss": initial.get(f"{prefix}_loss"),
                       "initial_accuracy": initial.get(f"{prefix}_accuracy")}


def _heldout(task, size, stop_when_solved):
    def done(state, record):
        if stop_when_solved and solved(record["heldout_errors"], size):
            return "solved"
        return None

    def report(state, history, model):
        evaluated, fields = _evaluations(history, "heldout")
        fields["sequences_to_solve"] = next((r["sequences_seen"] for r in evaluated
                                             if r["step"] > 0
                                             and solved(r["heldout_errors"], size)), None)
        return fields

    return Protocol("heldout", lambda: None, _unchanged, None, "heldout",
                    heldout_set(task, size), done, report)


def _train_test(task):
    def report(state, history, model):
        _, fields = _evaluations(history, "test")
        last = next((r for r in reversed(history) if "test_errors" in r), {})
        fields.update(test_errors=last.get("test_errors"), test_size=int(task.test[0].shape[0]))
        if not task.regression:  # on the host: the state may be spread over processes
            fields["test_confusion"] = confusion(jax.device_get(state.params), task.test,
                                                 model=model).tolist()
            fields["class_names"] = list(task.class_names or ()) or None
        return fields

    return Protocol("test", lambda: None, _unchanged, None, "test", task.test,
                    lambda state, record: None, report)


def _paper1997(task):
    rule = stop_rule(task.name)

    def observe(before, after, aux, seen):
        after = after._replace(stop=update_stop(rule, before.stop, aux["squared_error"],
                                                aux["abs_error"], seen))
        # A state that has stopped stays as it is: the weights tested are those at the stop.
        stopped = before.stop.stopped_at >= 0
        return jax.tree.map(lambda old, now: jnp.where(stopped, old, now), before, after)

    def done(state, record):
        return "stopped: ST3" if int(state.stop.stopped_at) >= 0 else None

    def report(state, history, model):
        result = evaluate(state.params, test_set(task), model=model, tolerance=rule.gamma)
        stopped_at = int(state.stop.stopped_at)
        return {"sequences_to_stop": stopped_at if stopped_at >= 0 else None,
                "test_errors": int(result["errors"]), "test_size": TEST_SIZE,
                "test_loss": float(result["loss"])}

    return Protocol("1997", lambda: init_stop(rule), observe, rule.gamma, None, None, done,
                    report)


def protocol_name(task, name=None, *, stop_when_solved=False) -> str:
    """The protocol ``name`` resolved for ``task`` and checked (None: ``test`` for a task with a
    test split, ``heldout`` for a generator); nothing is drawn."""
    has_test = getattr(task, "test", None) is not None
    name = ("test" if has_test else "heldout") if name is None else name
    if name not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {list(PROTOCOLS)}, got {name!r}")
    if name == "heldout" and has_test:
        raise ValueError(f"protocol heldout draws its held-out set from a generator; "
                         f"{task.name} is made from arrays: use protocol 'test' (its own "
                         "test split)")
    if name == "test" and not has_test:
        raise ValueError(f"protocol test evaluates a task's test split; {task.name} is a "
                         "generator: use protocol 'heldout' or '1997'")
    if name == "1997":
        stop_rule(task.name)
    if stop_when_solved and name != "heldout":
        raise ValueError(f"stop_when_solved (--stop-when-solved) is the held-out protocol's "
                         f"rule, not protocol {name}'s"
                         + (" (a test split must not choose when to stop)"
                            if name == "test" else ""))
    return name


def make_protocol(task, name=None, *, heldout=HELDOUT_SIZE, stop_when_solved=False) -> Protocol:
    """The [`Protocol`][attnrnn.train.protocol.Protocol] ``name`` for ``task``
    ([`protocol_name`][attnrnn.train.protocol.protocol_name]). ``heldout`` is the held-out
    set's size; ``stop_when_solved`` ends a held-out run at the first evaluation that meets
    the solved rule (a test split is never used to choose when to stop)."""
    name = protocol_name(task, name, stop_when_solved=stop_when_solved)
    if name == "1997":
        return _paper1997(task)
    return _train_test(task) if name == "test" else _heldout(task, heldout, stop_when_solved)
