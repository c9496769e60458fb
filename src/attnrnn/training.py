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
]

OPTIMIZERS = {"adam": optax.adam, "rmsprop": optax.rmsprop, "sgd": optax.sgd}
HELDOUT_KEY = 2**31 - 1  # the held-out set never shares a key with training data
NEVER_FORCE = 2**30  # apply_if_finite never forces a non-finite update through


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a run; ``summary.json`` records it whole.

    Steps run on device in chunks of ``eval_every`` (a held-out evaluation after each), so a
    run ends at the first chunk boundary at or after ``steps``.
    """

    task: str = "temporal-order"
    level: str = "moderate"
    model: str = "gated"
    hidden: int = 32
    steps: int = 600
    batch: int = 32
    optimizer: str = "adam"
    lr: float = 1e-2
    clip: float | None = 1.0
    seed: int = 0
    eval_every: int = 20
    heldout: int = 2560
    max_skips: int = 100

    def __post_init__(self):
        for name in ("hidden", "steps", "batch", "eval_every", "heldout", "max_skips"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if self.clip is not None and not self.clip > 0:
            raise ValueError(f"clip must be a positive number or None, got {self.clip!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got "
                             f"{self.optimizer!r}")
        parse_model(self.model)
        make_task(self.task, level=self.level)


class TrainState(NamedTuple):
    """Everything a run needs to continue bitwise: parameters, optimizer state (including
    apply_if_finite's skip counters), the step count and the data key."""

    params: NamedTuple
    opt_state: optax.OptState
    step: jax.Array
    key: jax.Array


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


def init_train_state(key, params, optimizer: optax.GradientTransformation) -> TrainState:
    """A fresh :class:`TrainState`; ``optimizer`` is the unguarded transformation."""
    return TrainState(params, guard_non_finite(optimizer).init(params), jnp.zeros((), jnp.int32),
                      key)


def _update(optimizer, spec, per_step, state: TrainState, batch):
    """One optimisation step on ``batch = (xs, labels, mask)``; the body every step shares."""
    (loss, (accuracy, _)), grads = jax.value_and_grad(batch_loss, has_aux=True)(
        state.params, *batch, spec=spec, per_step=per_step
    )
    updates, opt_state = guard_non_finite(optimizer).update(grads, state.opt_state, state.params)
    state = state._replace(
        params=optax.apply_updates(state.params, updates), opt_state=opt_state,
        step=state.step + 1,
    )
    metrics = {"loss": loss, "accuracy": accuracy, "grad_norm": optax.tree.norm(grads),
               "skipped": opt_state.notfinite_count > 0}
    return state, metrics


def make_train_step(optimizer, *, model, per_step=False) -> Callable:
    """A jitted ``(state, batch) -> (state, metrics)`` for batches you make yourself.

    ``metrics`` holds ``loss``, ``accuracy``, ``grad_norm`` (before clipping) and
    ``skipped`` (True when the gradient was non-finite and the update was skipped).
    """
    spec = parse_model(model)
    return jax.jit(lambda state, batch: _update(optimizer, spec, per_step, state, batch))


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


def make_train_chunk(optimizer, task, *, model, batch_size, steps_per_chunk, mesh=None):
    """A jitted ``state -> (state, metrics)`` that runs ``steps_per_chunk`` steps on device,
    each on a fresh batch drawn from ``task`` with the state's key; ``metrics`` are stacked
    per step. The input state's buffers are donated.

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
        return _update(optimizer, spec, task.per_step, state._replace(key=key), batch)

    def chunk(state):
        return lax.scan(step, state, None, length=steps_per_chunk)

    return jax.jit(chunk, donate_argnums=0)


def heldout_set(task, size=2560):
    """The fixed held-out batch: the same sequences for every run and seed."""
    return task.sample(jax.random.PRNGKey(HELDOUT_KEY), size)


def evaluate(params, heldout, *, model, per_step=False):
    """Held-out ``{"loss", "accuracy", "errors"}`` (errors: wrong predictions, counted over
    sequences, or over valid steps for per-step tasks)."""
    return _evaluate(params, heldout, parse_model(model), per_step)


@jax.jit(static_argnums=(2, 3))
def _evaluate(params, heldout, spec, per_step):
    loss, (accuracy, errors) = batch_loss(params, *heldout, spec=spec, per_step=per_step)
    return {"loss": loss, "accuracy": accuracy, "errors": errors}


def _heldout_record(step, batch_size, params, heldout, spec, per_step):
    metrics = evaluate(params, heldout, model=spec, per_step=per_step)
    return {"step": step, "sequences_seen": step * batch_size,
            **{f"heldout_{k}": float(v) for k, v in metrics.items()}}


def _record(step, batch_size, metrics_row):
    return {
        "step": step,
        "sequences_seen": step * batch_size,
        **{k: (bool(v) if k == "skipped" else float(v)) for k, v in metrics_row.items()},
    }


def new_train_state(config: TrainConfig, task=None) -> TrainState:
    """The untrained state of a run: parameters from ``config.seed``, fresh optimizer state."""
    task = task or make_task(config.task, level=config.level)
    init_key, data_key = jax.random.split(jax.random.PRNGKey(config.seed))
    params = model_init(init_key, config.model, input_size=task.features,
                        hidden_size=config.hidden, num_classes=task.classes)
    optimizer = make_optimizer(config.optimizer, config.lr, config.clip)
    return init_train_state(data_key, params, optimizer)


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
      stop_when_solved: stop at the first evaluation with held-out error <= 1/2560.
      task: a :class:`~attnrnn.tasks.Task` to use instead of ``config.task``.
      devices: data-parallel over these devices (an int N for the first N, or None for
        all): the batch is split, parameters and optimizer state are replicated.

    Returns:
      The final state, every step's record (``step``, ``sequences_seen``, ``loss``,
      ``accuracy``, ``grad_norm``, ``skipped``, and ``heldout_loss``/``heldout_accuracy`` on
      the last step of each chunk) and the summary dict of ``summary.json``.
    """
    from tqdm.auto import tqdm

    task = task or make_task(config.task, level=config.level)
    spec = parse_model(config.model)
    optimizer = make_optimizer(config.optimizer, config.lr, config.clip)
    mesh = data_parallel_mesh(devices)
    chunk = make_train_chunk(optimizer, task, model=spec, batch_size=config.batch,
                             steps_per_chunk=config.eval_every, mesh=mesh)
    state = replicate(new_train_state(config, task) if state is None else state, mesh)
    history = list(history)
    heldout = heldout_set(task, config.heldout)
    if config.heldout % mesh.size == 0:
        heldout = shard_batch(heldout, mesh)
    start = time.perf_counter()
    if int(state.step) == 0:
        # Step 0: the untrained model on the held-out set (initial loss and accuracy).
        history.append(_heldout_record(0, config.batch, state.params, heldout, spec,
                                       task.per_step))
        if on_chunk is not None:
            on_chunk(state, history, history[-1:])
    stop_reason = "completed"
    bar = tqdm(total=config.steps, initial=int(state.step), disable=not progress,
               unit="step", desc=f"{spec} on {config.task}")
    while int(state.step) < config.steps:
        state, metrics = chunk(state)
        step = int(state.step)
        rows = jax.device_get(metrics)
        first = step - config.eval_every + 1
        records = [_record(first + i, config.batch, {k: v[i] for k, v in rows.items()})
                   for i in range(config.eval_every)]
        records[-1].update(_heldout_record(step, config.batch, state.params, heldout, spec,
                                           task.per_step))
        history.extend(records)
        skips = int(consecutive_skips(state))
        bar.update(config.eval_every)
        bar.set_postfix(loss=f"{records[-1]['loss']:.3f}", acc=f"{records[-1]['accuracy']:.2f}",
                        heldout=f"{records[-1]['heldout_accuracy']:.4f}",
                        skipped=int(skipped_updates(state)))
        if on_chunk is not None:
            on_chunk(state, history, records)
        if skips >= config.max_skips:
            stop_reason = f"stopped: {skips} consecutive non-finite gradients"
            break
        if stop_when_solved and records[-1]["heldout_errors"] <= config.heldout / 2560:
            stop_reason = "solved"
            break
    bar.close()
    summary = summarize(config, history, state, time.perf_counter() - start, stop_reason)
    summary["devices"] = mesh.size
    return state, history, summary


def summarize(config, history, state, wall_seconds, stop_reason):
    """The ``summary.json`` dict of a run from its history (step 0 is the untrained model)."""
    evaluated = [r for r in history if "heldout_accuracy" in r]
    threshold = config.heldout / 2560
    solved = next((r["sequences_seen"] for r in evaluated
                   if r["step"] > 0 and r["heldout_errors"] <= threshold), None)
    initial = evaluated[0] if evaluated and evaluated[0]["step"] == 0 else {}
    trained = [r for r in history if "loss" in r]
    return {
        "heldout_accuracy": evaluated[-1]["heldout_accuracy"] if evaluated else None,
        "heldout_loss": evaluated[-1]["heldout_loss"] if evaluated else None,
        "sequences_to_solve": solved,
        "sequences_seen": int(state.step) * config.batch,
        "steps": int(state.step),
        "initial_loss": initial.get("heldout_loss"),
        "initial_accuracy": initial.get("heldout_accuracy"),
        "final_loss": trained[-1]["loss"] if trained else None,
        "wall_seconds": wall_seconds,
        "skipped_updates": int(skipped_updates(state)),
        "stop_reason": stop_reason,
        "config": dataclasses.asdict(config),
    }
