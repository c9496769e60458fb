"""Training with optax: a jitted train step, chunks of steps run on device, held-out
evaluation and the fit loop.

Data are generated inside the jitted step from the key carried in :class:`TrainState`, and
``steps_per_chunk`` steps run in one ``lax.scan`` on device, so the host sees the device
once per chunk (to log the chunk's metrics and evaluate), not once per step. Every update
goes through ``optax.apply_if_finite``: a non-finite gradient leaves the parameters and
optimizer moments untouched and is counted.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from attnrnn.models import batch_loss, model_init, parse_model
from attnrnn.protocol import (TEST_SIZE, ST3, StopState, init_stop, stop_rule, test_set,
                              update_stop)
from attnrnn.tasks import make_task

__all__ = [
    "TrainConfig",
    "TrainState",
    "make_optimizer",
    "guard_non_finite",
    "init_train_state",
    "make_train_step",
    "make_train_chunk",
    "data_parallel_mesh",
    "shard_batch",
    "replicate",
    "heldout_set",
    "evaluate",
    "skipped_updates",
    "consecutive_skips",
    "new_train_state",
    "fit",
    "summarize",
    "training_defaults",
    "fit_trials",
]

OPTIMIZERS = {"adam": optax.adam, "rmsprop": optax.rmsprop, "sgd": optax.sgd}
HELDOUT_KEY = 2**31 - 1  # the held-out set never shares a key with training data
NEVER_FORCE = 2**30  # apply_if_finite never forces a non-finite update through


# What a model trains with unless the config says otherwise: adam at lr 1e-2 with
# clip_by_global_norm(1.0), batch 32, 20 steps per device call (docs/results.md chose these);
# the 1997 LSTM the paper's online SGD (batch 1, lr 0.5, no clipping), 500 steps a call.
TRAINING_DEFAULTS = {"optimizer": "adam", "lr": 1e-2, "clip": 1.0, "batch": 32,
                     "eval_every": 20, "steps": 600}
MODEL_TRAINING_DEFAULTS = {
    "lstm1997": {"optimizer": "sgd", "lr": 0.5, "clip": None, "batch": 1, "eval_every": 500,
                 "steps": 200_000},
}
PROTOCOLS = ("heldout", "1997")


def training_defaults(model) -> dict:
    """The steps, optimizer, lr, clip, batch and eval_every a model trains with by default."""
    return {**TRAINING_DEFAULTS, **MODEL_TRAINING_DEFAULTS.get(parse_model(model).cell, {})}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a run; ``summary.json`` records it whole.

    ``steps``, ``optimizer``, ``lr``, ``clip``, ``batch`` and ``eval_every`` left as
    ``"default"`` take the model's (:func:`training_defaults`); the config then records the
    values used.
    ``clip=None`` means no clipping. ``length`` is the adding problem's ``T`` (the other
    tasks' default lengths when None).

    ``protocol="heldout"``: steps run on device in chunks of ``eval_every``, with a
    held-out evaluation after each, so a run ends at the first chunk boundary at or after
    ``steps``. ``protocol="1997"``: the paper's ST3/ABS stopping rule on the training
    sequences (:mod:`attnrnn.protocol`), checked after every step; ``steps`` is the budget,
    and the stopped weights are tested on a fresh set.
    """

    task: str = "temporal-order"
    level: str = "moderate"
    model: str = "gated"
    hidden: int = 32
    steps: int | str = "default"
    batch: int | str = "default"
    optimizer: str = "default"
    lr: float | str = "default"
    clip: float | None | str = "default"
    seed: int = 0
    eval_every: int | str = "default"
    heldout: int = 2560
    max_skips: int = 100
    protocol: str = "heldout"
    length: int | None = None

    def __post_init__(self):
        for name, value in training_defaults(self.model).items():
            if getattr(self, name) == "default":
                object.__setattr__(self, name, value)
        for name in ("hidden", "steps", "batch", "eval_every", "heldout", "max_skips"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if self.clip is not None and not (isinstance(self.clip, (int, float)) and self.clip > 0):
            raise ValueError(f"clip must be a positive number, or None for no clipping (--clip "
                             f"none), got {self.clip!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got "
                             f"{self.optimizer!r}")
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {list(PROTOCOLS)}, got {self.protocol!r}")
        task = self.make_task()
        if self.protocol == "1997":
            rule = stop_rule(task.name)
            if self.batch > rule.window:
                raise ValueError(f"batch must be at most the 1997 rule's window of "
                                 f"{rule.window} sequences, got {self.batch}")

    def make_task(self):
        return make_task(self.task, level=self.level, length=self.length)


class TrainState(NamedTuple):
    """Everything a run needs to continue bitwise: parameters, optimizer state (including
    apply_if_finite's skip counters), the step count, the data key, and under the 1997
    protocol the stopping rule's state (None otherwise)."""

    params: NamedTuple
    opt_state: optax.OptState
    step: jax.Array
    key: jax.Array
    stop: StopState | None = None


def make_optimizer(name="adam", learning_rate=3e-3, clip=1.0) -> optax.GradientTransformation:
    """``clip_by_global_norm(clip)`` (unless ``clip`` is None) followed by adam, rmsprop or
    sgd at ``learning_rate``."""
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {name!r}")
    inner = OPTIMIZERS[name](learning_rate)
    return inner if clip is None else optax.chain(optax.clip_by_global_norm(clip), inner)


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
                     stop_rule: ST3 | None = None) -> TrainState:
    """A fresh :class:`TrainState`; ``optimizer`` is the unguarded transformation;
    ``stop_rule`` the 1997 protocol's (:func:`attnrnn.protocol.stop_rule`), if any."""
    return TrainState(params, guard_non_finite(optimizer).init(params), jnp.zeros((), jnp.int32),
                      key, None if stop_rule is None else init_stop(stop_rule))


def _update(optimizer, spec, task_kind, state: TrainState, batch, stop_rule=None):
    """One optimisation step on ``batch = (xs, labels, mask)``; the body every step shares.
    ``task_kind = (per_step, regression)``. Under a stop rule, a state that has stopped
    stays as it is (so the weights tested are those at the stop)."""
    per_step, regression = task_kind
    (loss, aux), grads = jax.value_and_grad(batch_loss, has_aux=True)(
        state.params, *batch, spec=spec, per_step=per_step, regression=regression,
        tolerance=None if stop_rule is None else stop_rule.gamma)
    updates, opt_state = guard_non_finite(optimizer).update(grads, state.opt_state, state.params)
    new = state._replace(
        params=optax.apply_updates(state.params, updates), opt_state=opt_state,
        step=state.step + 1,
    )
    metrics = {"loss": loss, "accuracy": aux["accuracy"], "grad_norm": optax.tree.norm(grads),
               "skipped": opt_state.notfinite_count > 0}
    if stop_rule is not None:
        seen = new.step * batch[0].shape[0]
        new = new._replace(stop=update_stop(stop_rule, state.stop, aux["squared_error"],
                                            aux["abs_error"], seen))
        stopped = state.stop.stopped_at >= 0
        new = jax.tree.map(lambda old, now: jnp.where(stopped, old, now), state, new)
    return new, metrics


def make_train_step(optimizer, *, model, per_step=False, regression=False) -> Callable:
    """A jitted ``(state, batch) -> (state, metrics)`` for batches you make yourself.

    ``metrics`` holds ``loss``, ``accuracy``, ``grad_norm`` (before clipping) and
    ``skipped`` (True when the gradient was non-finite and the update was skipped).
    """
    spec = parse_model(model)
    return jax.jit(lambda state, batch: _update(optimizer, spec, (per_step, regression), state,
                                                batch))


def data_parallel_mesh(devices=None) -> Mesh:
    """A 1-D ``Mesh`` over a ``"data"`` axis: ``devices`` an int (the first N local devices),
    a list of devices, or None for every device (of every process, in a multi-host run)."""
    if devices is None:
        devices = jax.devices()
    elif isinstance(devices, int) and not isinstance(devices, bool):
        available = jax.local_devices()
        if not 1 <= devices <= len(available):
            raise ValueError(f"devices must be between 1 and the {len(available)} local "
                             f"devices, got {devices}")
        devices = available[:devices]
    return Mesh(list(devices), ("data",))


def shard_batch(batch, mesh: Mesh):
    """Places a batch with its leading (batch) axis split over the mesh's data axis."""
    size = jax.tree.leaves(batch)[0].shape[0]
    if size % mesh.size:
        raise ValueError(f"the batch of {size} sequences does not split evenly over "
                         f"{mesh.size} devices; use a batch size divisible by {mesh.size}")
    return jax.device_put(batch, NamedSharding(mesh, P("data")))


def replicate(tree, mesh: Mesh):
    """Places ``tree`` (parameters, optimizer state) whole on every device of ``mesh``."""
    return jax.device_put(tree, NamedSharding(mesh, P()))


def make_train_chunk(optimizer, task, *, model, batch_size, steps_per_chunk, mesh=None,
                     stop_rule=None, trials=False):
    """A jitted ``state -> (state, metrics)`` that runs ``steps_per_chunk`` steps on device,
    each on a fresh batch drawn from ``task`` with the state's key; ``metrics`` are stacked
    per step. The input state's buffers are donated. With a ``stop_rule`` (the state made
    with it), the 1997 rule is tracked after every step and a stopped state stays put.
    With ``trials=True`` the chunk runs a stack of independent states side by side
    (``jax.vmap``; see :func:`fit_trials`).

    With a ``mesh`` (see :func:`data_parallel_mesh`), each batch is split over its data axis
    and the state should be :func:`replicate`-d: XLA's partitioner then runs each device
    on its share of the batch and all-reduces the gradients.
    """
    spec = parse_model(model)
    if mesh is not None and batch_size % mesh.size:
        raise ValueError(f"batch size {batch_size} does not split evenly over {mesh.size} "
                         f"devices; use a multiple of {mesh.size}")

    def step(state, _):
        key, data_key = jax.random.split(state.key)
        batch = task.sample(data_key, batch_size)
        if mesh is not None:
            batch = lax.with_sharding_constraint(batch, NamedSharding(mesh, P("data")))
        return _update(optimizer, spec, (task.per_step, task.regression),
                       state._replace(key=key), batch, stop_rule)

    def chunk(state):
        return lax.scan(step, state, None, length=steps_per_chunk)

    chunk = jax.vmap(chunk) if trials else chunk
    return jax.jit(chunk, donate_argnums=0)


def heldout_set(task, size=2560):
    """The fixed held-out batch: the same sequences for every run and seed."""
    return task.sample(jax.random.PRNGKey(HELDOUT_KEY), size)


def evaluate(params, heldout, *, model, per_step=False, regression=False, tolerance=None):
    """Held-out ``{"loss", "accuracy", "errors"}`` (errors: wrong predictions, counted over
    sequences, or over valid steps for per-step tasks; for a regression, sequences with
    ``|y - t| >= tolerance``, default 0.04). With a ``tolerance`` a classifier's errors
    are the sequences not processed correctly under ABS(tolerance), as the 1997 test
    counts them."""
    return _evaluate(params, heldout, parse_model(model), per_step, regression, tolerance)


@jax.jit(static_argnums=(2, 3, 4, 5))
def _evaluate(params, heldout, spec, per_step, regression, tolerance):
    loss, aux = batch_loss(params, *heldout, spec=spec, per_step=per_step,
                           regression=regression, tolerance=tolerance)
    errors = aux["errors"]
    if tolerance is not None and not regression:
        errors = jnp.sum(aux["abs_error"] >= tolerance)
    return {"loss": loss, "accuracy": 1 - errors / heldout[1].shape[0], "errors": errors}


def _heldout_record(step, batch_size, params, heldout, spec, task):
    metrics = evaluate(params, heldout, model=spec, per_step=task.per_step,
                       regression=task.regression)
    return {"step": step, "sequences_seen": step * batch_size,
            **{f"heldout_{k}": float(v) for k, v in metrics.items()}}


def _record(step, batch_size, metrics_row):
    return {
        "step": step,
        "sequences_seen": step * batch_size,
        **{k: (bool(v) if k == "skipped" else float(v)) for k, v in metrics_row.items()},
    }


def new_train_state(config: TrainConfig, task=None, seed=None) -> TrainState:
    """The untrained state of a run: parameters from ``config.seed`` (or ``seed``, which may
    be traced, e.g. under ``jax.vmap``), fresh optimizer state (and the 1997 rule's state
    under that protocol)."""
    task = task or config.make_task()
    seed = config.seed if seed is None else seed
    init_key, data_key = jax.random.split(jax.random.PRNGKey(seed))
    params = model_init(init_key, config.model, input_size=task.features,
                        hidden_size=config.hidden, num_classes=task.classes)
    optimizer = make_optimizer(config.optimizer, config.lr, config.clip)
    return init_train_state(data_key, params, optimizer, _stop_rule(config, task))


def _stop_rule(config, task):
    return stop_rule(task.name) if config.protocol == "1997" else None


def fit(config: TrainConfig, *, state=None, history=(), on_chunk=None, progress=True,
        stop_when_solved=False, task=None, devices=None):
    """Trains per ``config``; returns ``(state, history, summary)``.

    Args:
      config: a :class:`TrainConfig`.
      state: a :class:`TrainState` to continue from (a resumed run); fresh when None. Its
        buffers are donated to the first chunk: use the returned state afterwards.
      history: the records of the steps before ``state`` (kept in the returned history).
      on_chunk: called as ``on_chunk(state, history, new_records)`` after the step-0
        evaluation and after every chunk of ``config.eval_every`` steps, e.g. to append to
        ``metrics.jsonl`` or to checkpoint.
      progress: show a tqdm bar (``tqdm.auto``: a widget in Jupyter).
      stop_when_solved: stop at the first evaluation with held-out error <= 1/2560 (the
        held-out protocol; the 1997 protocol always stops by its rule).
      task: a :class:`~attnrnn.tasks.Task` to use instead of ``config.task``.
      devices: data-parallel over these devices (an int N for the first N, or None for
        all): the batch is split, parameters and optimizer state are replicated.

    Returns:
      The final state, every step's record (``step``, ``sequences_seen``, ``loss``,
      ``accuracy``, ``grad_norm``, ``skipped``, and under the held-out protocol
      ``heldout_loss``/``heldout_accuracy``/``heldout_errors`` on the last step of each
      chunk) and the summary dict of ``summary.json``.
    """
    from tqdm.auto import tqdm

    task = task or config.make_task()
    spec = parse_model(config.model)
    rule = _stop_rule(config, task)
    optimizer = make_optimizer(config.optimizer, config.lr, config.clip)
    mesh = data_parallel_mesh(devices)
    chunk = make_train_chunk(optimizer, task, model=spec, batch_size=config.batch,
                             steps_per_chunk=config.eval_every, mesh=mesh, stop_rule=rule)
    state = replicate(new_train_state(config, task) if state is None else state, mesh)
    history = list(history)
    heldout = None
    if rule is None:
        heldout = heldout_set(task, config.heldout)
        if config.heldout % mesh.size == 0:
            heldout = shard_batch(heldout, mesh)
    start = time.perf_counter()
    if int(state.step) == 0 and heldout is not None:
        # Step 0: the untrained model on the held-out set (initial loss and accuracy).
        history.append(_heldout_record(0, config.batch, state.params, heldout, spec, task))
        if on_chunk is not None:
            on_chunk(state, history, history[-1:])
    stop_reason = "completed"
    bar = tqdm(total=config.steps, initial=int(state.step), disable=not progress,
               unit="step", desc=f"{spec} on {config.task}")
    while int(state.step) < config.steps:
        before = int(state.step)
        state, metrics = chunk(state)
        step = int(state.step)  # less than before + eval_every where the 1997 rule stopped
        rows = jax.device_get(metrics)
        records = [_record(before + 1 + i, config.batch, {k: v[i] for k, v in rows.items()})
                   for i in range(step - before)]
        if heldout is not None:
            records[-1].update(_heldout_record(step, config.batch, state.params, heldout, spec,
                                               task))
        history.extend(records)
        skips = int(consecutive_skips(state))
        bar.update(step - before)
        bar.set_postfix(loss=f"{records[-1]['loss']:.3f}", acc=f"{records[-1]['accuracy']:.2f}",
                        skipped=int(skipped_updates(state)))
        if on_chunk is not None:
            on_chunk(state, history, records)
        if skips >= config.max_skips:
            stop_reason = f"stopped: {skips} consecutive non-finite gradients"
            break
        if rule is not None and int(state.stop.stopped_at) >= 0:
            stop_reason = "stopped: ST3"
            break
        if (heldout is not None and stop_when_solved
                and records[-1]["heldout_errors"] <= config.heldout / 2560):
            stop_reason = "solved"
            break
    bar.close()
    summary = summarize(config, history, state, time.perf_counter() - start, stop_reason)
    if rule is not None:
        summary.update(_test_record(state, spec, task, rule))
    summary["devices"] = mesh.size
    return state, history, summary


def fit_trials(config: TrainConfig, seeds, *, progress=False, max_seconds=None):
    """Independent runs of ``config`` (one per seed) side by side on device under the 1997
    protocol: one jitted ``jax.vmap`` of the training chunk moves every trial ``eval_every``
    steps per call, a stopped trial stays put, and the loop ends when every trial has
    stopped or the budget is spent. Each trial is the run ``fit`` makes for its seed (the
    same data, initialisation and rule; batched arithmetic may round differently).
    ``max_seconds`` also ends the loop (after the chunk in flight) once that much wall time
    has passed: a wall-clock cap for long rows, visible in ``sequences_run``.

    Returns:
      one dict per seed: ``seed``, ``sequences_to_stop`` (None if the budget ran out),
      ``test_errors``, ``test_size``, ``skipped_updates``, ``num_params``,
      ``sequences_run`` (the trial's training sequences, stopped or not), and the trials'
      shared ``wall_seconds``.
    """
    from tqdm.auto import tqdm

    if config.protocol != "1997":
        raise ValueError(f"fit_trials runs the 1997 protocol, got protocol={config.protocol!r}")
    task = config.make_task()
    spec = parse_model(config.model)
    rule = _stop_rule(config, task)
    seeds = [int(s) for s in seeds]
    optimizer = make_optimizer(config.optimizer, config.lr, config.clip)
    chunk = make_train_chunk(optimizer, task, model=spec, batch_size=config.batch,
                             steps_per_chunk=config.eval_every, stop_rule=rule, trials=True)
    state = jax.jit(jax.vmap(lambda seed: new_train_state(config, task, seed)))(
        jnp.asarray(seeds))
    start = time.perf_counter()
    bar = tqdm(total=config.steps, disable=not progress, unit="step",
               desc=f"{len(seeds)} x {spec} on {config.task}")
    while int(state.step.max()) < config.steps and not bool((state.stop.stopped_at >= 0).all()):
        if max_seconds is not None and time.perf_counter() - start > max_seconds:
            break
        before = int(state.step.max())
        state, _ = chunk(state)
        bar.update(int(state.step.max()) - before)
    bar.close()
    wall = time.perf_counter() - start
    test = test_set(task)
    tests = jax.vmap(lambda params: _evaluate(params, test, spec, False, task.regression,
                                              rule.gamma)["errors"])(state.params)
    num_params = sum(int(w[0].size) for w in jax.tree.leaves(state.params))
    return [{"seed": seed, "sequences_to_stop": int(stop) if stop >= 0 else None,
             "test_errors": int(errors), "test_size": TEST_SIZE, "skipped_updates": int(skips),
             "num_params": num_params, "wall_seconds": wall,
             "sequences_run": int(steps) * config.batch}
            for seed, stop, errors, skips, steps in zip(
                seeds, state.stop.stopped_at, tests, state.opt_state.total_notfinite,
                state.step, strict=True)]


def _test_record(state, spec, task, rule):
    """The 1997 protocol's test of the stopped (or final) weights on a fresh set."""
    result = evaluate(state.params, test_set(task), model=spec, regression=task.regression,
                      tolerance=rule.gamma)
    stopped_at = int(state.stop.stopped_at)
    return {"sequences_to_stop": stopped_at if stopped_at >= 0 else None,
            "test_errors": int(result["errors"]), "test_size": TEST_SIZE,
            "test_loss": float(result["loss"])}


def summarize(config, history, state, wall_seconds, stop_reason):
    """The ``summary.json`` dict of a run from its history (step 0 is the untrained model)."""
    evaluated = [r for r in history if "heldout_accuracy" in r]
    threshold = config.heldout / 2560
    solved = next((r["sequences_seen"] for r in evaluated
                   if r["step"] > 0 and r["heldout_errors"] <= threshold), None)
    initial = evaluated[0] if evaluated and evaluated[0]["step"] == 0 else {}
    trained = [r for r in history if "loss" in r]
    return {
        "protocol": config.protocol,
        "heldout_accuracy": evaluated[-1]["heldout_accuracy"] if evaluated else None,
        "heldout_loss": evaluated[-1]["heldout_loss"] if evaluated else None,
        "sequences_to_solve": solved,
        "sequences_seen": int(state.step) * config.batch,
        "steps": int(state.step),
        "num_params": sum(int(w.size) for w in jax.tree.leaves(state.params)),
        "initial_loss": initial.get("heldout_loss"),
        "initial_accuracy": initial.get("heldout_accuracy"),
        "final_loss": trained[-1]["loss"] if trained else None,
        "wall_seconds": wall_seconds,
        "skipped_updates": int(skipped_updates(state)),
        "stop_reason": stop_reason,
        "config": dataclasses.asdict(config),
    }
