"""The host loop: [`fit`][attnrnn.train.loop.fit] trains one run chunk by chunk (records,
held-out evaluation, stopping, the summary), [`fit_trials`][attnrnn.train.loop.fit_trials] many
1997-protocol trials side by side."""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp

from attnrnn.train.config import TrainConfig
from attnrnn.train.evaluation import evaluate, heldout_set, solved
from attnrnn.train.protocol import TEST_SIZE, stop_rule, test_set
from attnrnn.train.sharding import data_parallel_mesh, replicate, shard_batch
from attnrnn.train.step import (TrainState, consecutive_skips, init_train_state,
                                make_optimizer, make_train_chunk, skipped_updates)

__all__ = ["new_train_state", "fit", "fit_trials", "summarize"]


def _heldout_record(step, batch_size, params, heldout, model):
    metrics = evaluate(params, heldout, model=model)
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
    params = config.build_model(task).init(init_key)
    optimizer = make_optimizer(config.optimizer, config.lr, config.clip)
    return init_train_state(data_key, params, optimizer, _stop_rule(config, task))


def _stop_rule(config, task):
    return stop_rule(task.name) if config.protocol == "1997" else None


def fit(config: TrainConfig, *, state=None, history=(), on_chunk=None, progress=True,
        stop_when_solved=False, task=None, devices=None, max_seconds=None):
    """Trains per ``config``; returns ``(state, history, summary)``.

    Args:
      config: a ``TrainConfig``.
      state: a ``TrainState`` to continue from (a resumed run); fresh when None. It is
        copied before training (the chunks donate their input), so it stays usable, and
        leaves may share a buffer (they train as separate leaves).
      history: the records of the steps before ``state`` (kept in the returned history).
      on_chunk: called as ``on_chunk(state, history, new_records)`` after the step-0
        evaluation and after every chunk of ``config.eval_every`` steps, e.g. to append to
        ``metrics.jsonl`` or to checkpoint.
      progress: show a tqdm bar (``tqdm.auto``: a widget in Jupyter).
      stop_when_solved: stop at the first evaluation with held-out error <= 1/2560 (the
        held-out protocol; the 1997 protocol always stops by its rule).
      task: a [`Task`][attnrnn.train.tasks.Task] to use instead of ``config.task``.
      devices: data-parallel over these devices (an int N for the first N, or None for
        all): the batch is split, parameters and optimizer state are replicated.
      max_seconds: end the loop after the chunk that takes the wall time past this many
        seconds (``stop_reason`` says so; a 1997-protocol run is then tested unstopped, like
        an exhausted budget). None: no cap.

    Returns:
      The final state, every step's record (``step``, ``sequences_seen``, ``loss``,
      ``accuracy``, ``grad_norm``, ``skipped``, and under the held-out protocol
      ``heldout_loss``/``heldout_accuracy``/``heldout_errors`` on the last step of each
      chunk) and the summary dict of ``summary.json``.
    """
    task = task or config.make_task()
    model = config.build_model(task)
    rule = _stop_rule(config, task)
    optimizer = make_optimizer(config.optimizer, config.lr, config.clip)
    mesh = data_parallel_mesh(devices)
    chunk = make_train_chunk(optimizer, task, model, batch_size=config.batch,
                             steps_per_chunk=config.eval_every, mesh=mesh, stop_rule=rule)
    state = new_train_state(config, task) if state is None else state
    # A copy: XLA refuses to donate one buffer twice, and the caller's arrays stay alive.
    state = replicate(jax.tree.map(jnp.copy, state), mesh)
    history = list(history)
    heldout = None
    if rule is None:
        heldout = heldout_set(task, config.heldout)
        if config.heldout % mesh.size == 0:
            heldout = shard_batch(heldout, mesh)
    start = time.perf_counter()
    if int(state.step) == 0 and heldout is not None:
        # Step 0: the untrained model on the held-out set (initial loss and accuracy).
        history.append(_heldout_record(0, config.batch, state.params, heldout, model))
        if on_chunk is not None:
            on_chunk(state, history, history[-1:])
    stop_reason = "completed"
    bar = _progress_bar(progress, total=config.steps, initial=int(state.step),
                        desc=f"{model.name} on {config.task}")
    while int(state.step) < config.steps:
        before = int(state.step)
        state, metrics = chunk(state)
        step = int(state.step)  # less than before + eval_every where the 1997 rule stopped
        rows = jax.device_get(metrics)
        records = [_record(before + 1 + i, config.batch, {k: v[i] for k, v in rows.items()})
                   for i in range(step - before)]
        if heldout is not None:
            records[-1].update(_heldout_record(step, config.batch, state.params, heldout,
                                               model))
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
                and solved(records[-1]["heldout_errors"], config.heldout)):
            stop_reason = "solved"
            break
        if max_seconds is not None and time.perf_counter() - start > max_seconds:
            stop_reason = f"stopped: wall-clock cap of {max_seconds:g} s"
            break
    bar.close()
    summary = summarize(config, history, state, time.perf_counter() - start, stop_reason)
    if rule is not None:
        summary.update(_test_record(state, model, test_set(task), rule))
    summary["devices"] = mesh.size
    return state, history, summary


def _progress_bar(progress, **kwargs):
    """A tqdm bar in steps; ``tqdm.auto`` (a widget in Jupyter) only when it is shown, since
    importing it in a notebook without ipywidgets prints a warning even for a hidden bar."""
    if progress:
        from tqdm.auto import tqdm
    else:
        from tqdm import tqdm
    return tqdm(disable=not progress, unit="step", **kwargs)


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
      ``test_errors``, ``test_loss``, ``test_size``, ``skipped_updates``, ``num_params``,
      ``sequences_run`` (the trial's training sequences, stopped or not), and the trials'
      shared ``wall_seconds``.
    """
    if config.protocol != "1997":
        raise ValueError(f"fit_trials runs the 1997 protocol, got protocol={config.protocol!r}")
    task = config.make_task()
    model = config.build_model(task)
    rule = _stop_rule(config, task)
    seeds = [int(s) for s in seeds]
    optimizer = make_optimizer(config.optimizer, config.lr, config.clip)
    chunk = make_train_chunk(optimizer, task, model, batch_size=config.batch,
                             steps_per_chunk=config.eval_every, stop_rule=rule, trials=True)
    state = jax.jit(jax.vmap(lambda seed: new_train_state(config, task, seed)))(
        jnp.asarray(seeds))
    start = time.perf_counter()
    bar = _progress_bar(progress, total=config.steps,
                        desc=f"{len(seeds)} x {model.name} on {config.task}")
    while int(state.step.max()) < config.steps and not bool((state.stop.stopped_at >= 0).all()):
        if max_seconds is not None and time.perf_counter() - start > max_seconds:
            break
        before = int(state.step.max())
        state, _ = chunk(state)
        bar.update(int(state.step.max()) - before)
    bar.close()
    wall = time.perf_counter() - start
    test = test_set(task)
    trials = []
    # One trial at a time: ten trials' 2,560 test sequences side by side would hold ten times
    # the activations (13 GiB for the LSTM at T = 1000), and the test runs once.
    for i, seed in enumerate(seeds):
        trial = jax.tree.map(lambda leaf: leaf[i], state)
        trials.append({"seed": seed, **_test_record(trial, model, test, rule),
                       "skipped_updates": int(skipped_updates(trial)),
                       "num_params": _num_params(trial.params), "wall_seconds": wall,
                       "sequences_run": int(trial.step) * config.batch})
    return trials


def _test_record(state, model, test, rule):
    """The 1997 protocol's test of the stopped (or final) weights on the fresh set ``test``."""
    result = evaluate(state.params, test, model=model, tolerance=rule.gamma)
    stopped_at = int(state.stop.stopped_at)
    return {"sequences_to_stop": stopped_at if stopped_at >= 0 else None,
            "test_errors": int(result["errors"]), "test_size": TEST_SIZE,
            "test_loss": float(result["loss"])}


def _num_params(params):
    return sum(int(w.size) for w in jax.tree.leaves(params))


def summarize(config, history, state, wall_seconds, stop_reason):
    """The ``summary.json`` dict of a run from its history (step 0 is the untrained model)."""
    evaluated = [r for r in history if "heldout_accuracy" in r]
    solved_at = next((r["sequences_seen"] for r in evaluated
                      if r["step"] > 0 and solved(r["heldout_errors"], config.heldout)), None)
    initial = evaluated[0] if evaluated and evaluated[0]["step"] == 0 else {}
    trained = [r for r in history if "loss" in r]
    return {
        "protocol": config.protocol,
        "heldout_accuracy": evaluated[-1]["heldout_accuracy"] if evaluated else None,
        "heldout_loss": evaluated[-1]["heldout_loss"] if evaluated else None,
        "sequences_to_solve": solved_at,
        "sequences_seen": int(state.step) * config.batch,
        "steps": int(state.step),
        "num_params": _num_params(state.params),
        "initial_loss": initial.get("heldout_loss"),
        "initial_accuracy": initial.get("heldout_accuracy"),
        "final_loss": trained[-1]["loss"] if trained else None,
        "wall_seconds": wall_seconds,
        "skipped_updates": int(skipped_updates(state)),
        "stop_reason": stop_reason,
        "config": dataclasses.asdict(config),
    }
