"""The optimisation step: optax with a non-finite guard, one update, and chunks of updates
run on device.

Data are drawn inside the jitted chunk from the key carried in
[`TrainState`][attnrnn.train.step.TrainState] (generated, or taken from a task's training
arrays: [`next_batch`][attnrnn.train.task.next_batch]), and ``steps_per_chunk`` steps run in one
``lax.scan`` on device, so the host sees the device once per chunk, not once per step. Every
update goes through ``optax.apply_if_finite``: a non-finite gradient leaves the parameters and
optimizer moments untouched and is counted.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax

from attnrnn.train.evaluation import check_batch
from attnrnn.train.protocol import Protocol, StopState
from attnrnn.train.sharding import check_divides, constrain_batch
from attnrnn.train.task import next_batch

__all__ = ["NO_CLIP", "OPTIMIZERS", "TrainState", "make_optimizer", "guard_non_finite",
           "init_train_state", "make_train_step", "make_train_chunk", "skipped_updates",
           "consecutive_skips"]

OPTIMIZERS = {"adam": optax.adam, "rmsprop": optax.rmsprop, "sgd": optax.sgd}
# ``clip=NO_CLIP`` trains without clipping (``--clip none``).
NO_CLIP = "none"
NEVER_FORCE = 2**30  # apply_if_finite never forces a non-finite update through


class TrainState(NamedTuple):
    """Everything a run needs to continue bitwise: parameters, optimizer state (including
    apply_if_finite's skip counters), the step count, the data key, and what the run's
    [`Protocol`][attnrnn.train.protocol.Protocol] carries (the 1997 stopping rule's state;
    None for the others)."""

    params: NamedTuple
    opt_state: optax.OptState
    step: jax.Array
    key: jax.Array
    stop: StopState | None = None


def check_optimizer(name, clip):
    """``name`` must be one of ``OPTIMIZERS`` and ``clip`` a positive number or ``NO_CLIP``
    (for a config when it is made, and for ``make_optimizer``)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {name!r}")
    if clip != NO_CLIP and (isinstance(clip, bool) or not isinstance(clip, (int, float))
                            or not clip > 0):
        raise ValueError(f"clip must be a positive number, or {NO_CLIP!r} for no clipping "
                         f"(--clip none), got {clip!r}")


def make_optimizer(name, learning_rate, clip) -> optax.GradientTransformation:
    """``clip_by_global_norm(clip)`` followed by adam, rmsprop or sgd at ``learning_rate``;
    ``clip=NO_CLIP`` (``"none"``): no clipping, as everywhere in the application (``None``
    is not a value here: a config's ``None`` means its default; the defaults live in
    [`attnrnn.train.config`][attnrnn.train.config])."""
    check_optimizer(name, clip)
    inner = OPTIMIZERS[name](learning_rate)
    return inner if clip == NO_CLIP else optax.chain(optax.clip_by_global_norm(clip), inner)


def guard_non_finite(optimizer: optax.GradientTransformation) -> optax.GradientTransformation:
    """Wraps ``optimizer`` so non-finite gradients skip the update (and are counted)."""
    return optax.apply_if_finite(optimizer, max_consecutive_errors=NEVER_FORCE)


def skipped_updates(state: TrainState):
    """Total updates skipped for non-finite gradients so far."""
    return state.opt_state.total_notfinite


def consecutive_skips(state: TrainState):
    """Updates skipped in a row up to now."""
    return state.opt_state.notfinite_count


def init_train_state(key, params, optimizer: optax.GradientTransformation,
                     protocol: Protocol | None = None) -> TrainState:
    """A fresh [`TrainState`][attnrnn.train.step.TrainState]; ``optimizer`` is the unguarded
    transformation; ``protocol`` the run's
    ([`attnrnn.train.protocol.make_protocol`][attnrnn.train.protocol.make_protocol]), if it
    carries anything through the steps."""
    return TrainState(params, guard_non_finite(optimizer).init(params), jnp.zeros((), jnp.int32),
                      key, None if protocol is None else protocol.init())


def _update(optimizer, loss, state: TrainState, batch, protocol=None):
    """One optimisation step of ``loss`` (a [`Model`][attnrnn.train.models.Model]'s) on
    ``batch = (xs, labels, mask)`` (or ``(xs, labels)``: every step valid); the body every
    step shares. The ``protocol`` observes the step (the 1997 rule: a stopped state stays as
    it is)."""
    tolerance = None if protocol is None else protocol.tolerance
    batch = check_batch(batch)
    (value, aux), grads = jax.value_and_grad(loss, has_aux=True)(state.params, *batch,
                                                                  tolerance=tolerance)
    updates, opt_state = guard_non_finite(optimizer).update(grads, state.opt_state, state.params)
    new = state._replace(
        params=optax.apply_updates(state.params, updates), opt_state=opt_state,
        step=state.step + 1,
    )
    metrics = {"loss": value, "accuracy": aux["accuracy"], "grad_norm": optax.tree.norm(grads),
               "skipped": opt_state.notfinite_count > 0}
    if protocol is not None:
        new = protocol.observe(state, new, aux, new.step * batch[0].shape[0])
    return new, metrics


def make_train_step(optimizer, model) -> Callable:
    """A jitted ``(state, batch) -> (state, metrics)`` for batches you make yourself
    (``(xs, labels, mask)``, or ``(xs, labels)`` when every step is valid); ``model`` a
    [`Model`][attnrnn.train.models.Model].

    ``metrics`` holds ``loss``, ``accuracy``, ``grad_norm`` (before clipping) and
    ``skipped`` (True when the gradient was non-finite and the update was skipped).
    """
    return jax.jit(lambda state, batch: _update(optimizer, model.loss, state, batch))


def make_train_chunk(optimizer, task, model, *, batch_size, steps_per_chunk, mesh=None,
                     protocol=None, trials=False):
    """A jitted ``(state, train=None) -> (state, metrics)`` that runs ``steps_per_chunk``
    steps of ``model`` on device, each on the batch
    [`next_batch`][attnrnn.train.task.next_batch] draws from ``task`` with the state's key
    and step; ``metrics`` are stacked per step. For a task made from arrays pass its training
    split as ``train`` (``task.train``): as an argument it is not baked into the compiled
    program as a constant (left out, ``task.train`` is). The input state's buffers are
    donated. A ``protocol`` (the state made with it) observes every step (the 1997 rule: a
    stopped state stays put). With ``trials=True`` the chunk runs a stack of independent
    states side by side (``jax.vmap``; see
    [`attnrnn.train.loop.fit_trials`][attnrnn.train.loop.fit_trials]).

    With a ``mesh`` (see
    [`attnrnn.train.sharding.data_parallel_mesh`][attnrnn.train.sharding.data_parallel_mesh]),
    each batch is split over its data axis and the state should be replicated: XLA's
    partitioner then runs each device on its share of the batch and all-reduces the gradients.
    """
    if mesh is not None:
        check_divides(batch_size, mesh)

    def step(train, state, _):
        key, batch = next_batch(task, state.key, state.step, batch_size, train)
        if mesh is not None:
            batch = constrain_batch(batch, mesh)
        return _update(optimizer, model.loss, state._replace(key=key), batch, protocol)

    def chunk(state, train=None):
        return lax.scan(functools.partial(step, train), state, None, length=steps_per_chunk)

    def trial_chunks(states, train=None):  # the training arrays are shared, not stacked
        return jax.vmap(chunk, in_axes=(0, None))(states, train)

    return jax.jit(trial_chunks if trials else chunk, donate_argnums=0)
