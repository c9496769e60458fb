"""The host loop: [`fit`][attnrnn.train.loop.fit] trains one run chunk by chunk (records,
held-out evaluation, stopping, the summary), [`fit_trials`][attnrnn.train.loop.fit_trials] many
1997-protocol trials side by side."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp

from attnrnn.train.build import Run, build_run
from attnrnn.train.config import TrainConfig
from attnrnn.train.evaluation import evaluate
from attnrnn.train.sharding import data_parallel_mesh, replicate, shard_batch
from attnrnn.train.step import (TrainState, consecutive_skips, init_train_state,
                                make_train_chunk, skipped_updates)

__all__ = ["RunOptions", "new_train_state", "fit", "fit_trials", "summarize"]


class RunOptions(NamedTuple):
    """How a run goes, beside what it learns (its ``TrainConfig``), as one value:

    - ``progress``: show a tqdm bar (``tqdm.auto``: a widget in Jupyter);
    - ``stop_when_solved``: stop at the first evaluation with held-out error <= 1/2560 (the
      held-out protocol only);
    - ``devices``: data-parallel over these devices (an int N for the first N; None: as many
      as the batch splits over evenly, every device of every process in a multi-host run):
      the batch is split, parameters and optimizer state are replicated;
    - ``max_seconds``: end the loop after the chunk that takes the wall time past this many
      seconds (``stop_reason`` says so; a 1997-protocol run is then tested unstopped, like an
      exhausted budget); None: no cap;
    - ``checkpoint_every``: a run folder's checkpoint interval in steps (rounded up to a
      multiple of ``eval_every``; [`start_run`][attnrnn.train.run.start_run]); None: only at
      the end.

    The functions that run a run take these as keywords, the one way to give them
    (``fit(config, progress=False)``, ``start_run(config, out, checkpoint_every=100)``); this
    value is what they make of them.
    """

    progress: bool = True
    stop_when_solved: bool = False
    devices: int | Sequence | None = None
    max_seconds: float | None = None
    checkpoint_every: int | None = None


def run_options(keywords) -> RunOptions:
    """The ``RunOptions`` of a function's run-option ``keywords`` (each a field; the rest
    default), checked."""
    unknown = sorted(set(keywords) - set(RunOptions._fields))
    if unknown:
        raise TypeError(f"unexpected keyword argument {unknown[0]!r} (the run options are "
                        f"{', '.join(RunOptions._fields)})")
    options = RunOptions(**keywords)
    if options.checkpoint_every is not None and (
            isinstance(options.checkpoint_every, bool)
            or not isinstance(options.checkpoint_every, int) or options.checkpoint_every < 1):
        raise ValueError(f"checkpoint_every must be a positive int, got "
                         f"{options.checkpoint_every!r}")
    return options


def _record(step, batch_size, metrics_row):
    return {
        "step": step,
        "sequences_seen": step * batch_size,
        **{k: (bool(v) if k == "skipped" else float(v)) for k, v in metrics_row.items()},
    }


def new_train_state(run: Run, seed=None) -> TrainState:
    """The untrained state of ``run`` (a [`Run`][attnrnn.train.build.Run]): parameters from
    its config's seed (or ``seed``, which may be traced, e.g. under ``jax.vmap``), fresh
    optimizer state, and what its protocol carries through the steps (the 1997 rule's)."""
    seed = run.config.seed if seed is None else seed
    init_key, data_key = jax.random.split(jax.random.PRNGKey(seed))
    return init_train_state(data_key, run.model.init(init_key), run.optimizer, run.protocol)


def fit(config: TrainConfig | Run, *, state=None, history=(), on_chunk=None, task=None,
        model=None, optimizer=None, **options):
    """Trains per ``config``; returns ``(state, history, summary)``.

    One loop for every protocol ([`attnrnn.train.protocol`][attnrnn.train.protocol]): the
    held-out set of a generated task, the test split of a task made from arrays, or the 1997
    stopping rule.

    Args:
      config: a ``TrainConfig``, or a [`Run`][attnrnn.train.build.Run] built from one (then
        ``task``, ``model`` and ``optimizer`` are its own, and ``stop_when_solved`` must be
        the one it was built with).
      state: a ``TrainState`` to continue from (a resumed run); fresh when None. It is
        copied before training (the chunks donate their input), so it stays usable, and
        leaves may share a buffer (they train as separate leaves).
      history: the records of the steps before ``state`` (kept in the returned history).
      on_chunk: called as ``on_chunk(state, history, new_records)`` after the step-0
        evaluation and after every chunk of ``config.eval_every`` steps, e.g. to append to
        ``metrics.jsonl`` or to checkpoint.
      task: a [`Task`][attnrnn.train.task.Task] to use instead of ``config.task`` (e.g.
        [`array_task`][attnrnn.train.data.array_task] of your own arrays); the summary's
        ``config.task`` records its name.
      model: a [`Model`][attnrnn.train.models.Model] to train instead of the config's (any
        ``init``/``apply``/``loss`` triple, e.g. a Flax module's, in this loop); the
        config's training settings still apply.
      optimizer: an optax transformation to train with instead of the config's
        ``optimizer``/``lr``/``clip`` (e.g. chained with a projection after each update).
      **options: the run options, the fields of
        [`RunOptions`][attnrnn.train.loop.RunOptions] (progress bar, stopping when solved,
        devices, a wall-clock cap).

    Returns:
      The final state, every step's record (``step``, ``sequences_seen``, ``loss``,
      ``accuracy``, ``grad_norm``, ``skipped``, and on the last step of each chunk the
      evaluation's ``heldout_loss``/``heldout_accuracy``/``heldout_errors``, or
      ``test_loss``/``test_accuracy``/``test_errors``) and the summary dict of
      ``summary.json``.
    """
    options = run_options(options)
    run = _as_run(config, task, model, optimizer, options.stop_when_solved)
    mesh = data_parallel_mesh(options.devices, run.config.batch)
    state = new_train_state(run) if state is None else state
    # A copy: XLA refuses to donate one buffer twice, and the caller's arrays stay alive.
    state = replicate(jax.tree.map(jnp.copy, state), mesh)
    history, evaluation = list(history), _evaluation(run.protocol, run.model, mesh)
    start = time.perf_counter()
    if int(state.step) == 0 and not history and run.protocol.eval_set is not None:
        # Step 0: the untrained model evaluated, once (a run interrupted at step 0 kept it).
        history.append({"step": 0, "sequences_seen": 0, **evaluation(state.params)})
        if on_chunk is not None:
            on_chunk(state, history, history[-1:])
    state, stop_reason = _train(run, state, history, evaluation, on_chunk, mesh, options, start)
    summary = summarize(run.config, history, state, time.perf_counter() - start, stop_reason)
    summary.update(protocol=run.protocol.name, **run.protocol.report(state, history, run.model),
                   devices=mesh.size, model=run.model.name)
    summary["config"]["task"] = run.task.name
    return state, history, summary


def _as_run(config, task, model, optimizer, stop_when_solved) -> Run:
    """``config`` built (``build_run``), or the ``Run`` it is, which nothing may override."""
    if not isinstance(config, Run):
        return build_run(config, task=task, model=model, optimizer=optimizer,
                         stop_when_solved=stop_when_solved)
    if any(given is not None for given in (task, model, optimizer)) or (
            stop_when_solved != config.stop_when_solved):
        raise ValueError("fit got a Run and task=, model=, optimizer= or stop_when_solved= "
                         "beside it: a Run is trained as it was built (build_run takes them)")
    return config


def _train(run, state, history, evaluation, on_chunk, mesh, options, start):
    """Chunks of training until the run is done or stopped: each chunk's records appended
    to ``history`` (and handed to ``on_chunk``); returns the state and the stop reason."""
    config = run.config
    chunk = _chunks(config, run.optimizer, run.task, run.model, mesh=mesh, protocol=run.protocol)
    # Whole on every device (of every process: a jitted program's inputs are global arrays).
    train = None if run.task.train is None else replicate(run.task.train, mesh)
    with _progress_bar(options.progress, total=config.steps, initial=int(state.step),
                       desc=f"{run.model.name} on {run.task.name}") as bar:  # closed by Ctrl-C
        while int(state.step) < config.steps:
            before = int(state.step)
            state, metrics = chunk(before)(state, train)
            step = int(state.step)  # less than before + eval_every where the 1997 rule stopped
            rows = jax.device_get(metrics)
            records = [_record(before + 1 + i, config.batch, {k: v[i] for k, v in rows.items()})
                       for i in range(step - before)]
            records[-1].update(evaluation(state.params))
            history.extend(records)
            bar.update(step - before)
            bar.set_postfix(loss=f"{records[-1]['loss']:.3f}", acc=f"{records[-1]['accuracy']:.2f}",
                            skipped=int(skipped_updates(state)))
            if on_chunk is not None:
                on_chunk(state, history, records)
            reason = _stop_reason(config, run.protocol, state, records[-1],
                                  time.perf_counter() - start, options.max_seconds)
            if reason is not None:
                return state, reason
    return state, "completed"


def _evaluation(protocol, model, mesh):
    """``evaluation(params) -> {"<heldout|test>_loss", …}`` on the protocol's evaluation set
    (split over the mesh when it divides evenly); ``{}`` for a protocol without one."""
    eval_set = protocol.eval_set
    if eval_set is not None and eval_set[0].shape[0] % mesh.size == 0:
        eval_set = shard_batch(eval_set, mesh)

    def evaluation(params):
        if eval_set is None:
            return {}
        metrics = evaluate(params, eval_set, model=model)
        return {f"{protocol.evaluation}_{k}": int(v) if k == "errors" else float(v)
                for k, v in metrics.items()}

    return evaluation


def _stop_reason(config, protocol, state, last_record, seconds, max_seconds):
    """Why the run stops after this chunk, or None: the protocol's rule, too many
    non-finite gradients in a row, or the wall-clock cap."""
    skips = int(consecutive_skips(state))
    if skips >= config.max_skips:
        return f"stopped: {skips} consecutive non-finite gradients"
    reason = protocol.done(state, last_record)
    if reason is None and max_seconds is not None and seconds > max_seconds:
        return f"stopped: wall-clock cap of {max_seconds:g} s"
    return reason


def _chunks(config, optimizer, task, model, **options):
    """``chunk(step)``: the jitted training chunk that runs from ``step`` to the next multiple
    of ``config.eval_every``, or to ``config.steps`` if that comes first — so exactly
    ``steps`` steps run, and the chunks (and evaluations) of a resumed run fall where an
    uninterrupted run's do. One compilation per chunk length (at most three)."""
    compiled = {}

    def chunk(step):
        length = min(config.eval_every - step % config.eval_every, config.steps - step)
        if length not in compiled:
            compiled[length] = make_train_chunk(optimizer, task, model, batch_size=config.batch,
                                                steps_per_chunk=length, **options)
        return compiled[length]

    return chunk


def _progress_bar(progress, **kwargs):
    """A tqdm bar in steps; ``tqdm.auto`` (a widget in Jupyter) only when it is shown, since
    importing it in a notebook without ipywidgets prints a warning even for a hidden bar."""
    if progress:
        from tqdm.auto import tqdm
    else:
        from tqdm import tqdm
    return tqdm(disable=not progress, unit="step", **kwargs)


def fit_trials(config: TrainConfig, seeds, *, progress=False, max_seconds=None, model=None):
    """Independent runs of ``config`` (one per seed) side by side on device under the 1997
    protocol: one jitted ``jax.vmap`` of the training chunk moves every trial ``eval_every``
    steps per call, a stopped trial stays put, and the loop ends when every trial has
    stopped or the budget is spent. Each trial is the run ``fit`` makes for its seed (the
    same data, initialisation and rule; batched arithmetic may round differently).
    ``max_seconds`` also ends the loop (after the chunk in flight) once that much wall time
    has passed: a wall-clock cap for long rows, visible in ``sequences_run``. ``model``: a
    [`Model`][attnrnn.train.models.Model] to train instead of the config's (as in ``fit``).

    Returns:
      one dict per seed: ``seed``, ``sequences_to_stop`` (None if the budget ran out),
      ``test_errors``, ``test_loss``, ``test_size``, ``skipped_updates``, ``num_params``,
      ``sequences_run`` (the trial's training sequences, stopped or not), and the trials'
      shared ``wall_seconds``.
    """
    if config.protocol != "1997":
        raise ValueError(f"fit_trials runs the 1997 protocol, got protocol={config.protocol!r}")
    run = build_run(config, model=model)
    config, task, model, protocol = run.config, run.task, run.model, run.protocol
    seeds = [int(s) for s in seeds]
    chunk = _chunks(config, run.optimizer, task, model, protocol=protocol, trials=True)
    state = jax.jit(jax.vmap(lambda seed: new_train_state(run, seed)))(jnp.asarray(seeds))
    start = time.perf_counter()
    bar = _progress_bar(progress, total=config.steps,
                        desc=f"{len(seeds)} x {model.name} on {config.task}")
    while int(state.step.max()) < config.steps and not bool((state.stop.stopped_at >= 0).all()):
        if max_seconds is not None and time.perf_counter() - start > max_seconds:
            break
        before = int(state.step.max())
        state, _ = chunk(before)(state)
        bar.update(int(state.step.max()) - before)
    bar.close()
    wall = time.perf_counter() - start
    trials = []
    # One trial at a time: ten trials' 2,560 test sequences side by side would hold ten times
    # the activations, and the test runs once.
    for i, seed in enumerate(seeds):
        trial = jax.tree.map(lambda leaf: leaf[i], state)
        trials.append({"seed": seed, **protocol.report(trial, [], model),
                       "skipped_updates": int(skipped_updates(trial)),
                       "num_params": _num_params(trial.params), "wall_seconds": wall,
                       "sequences_run": int(trial.step) * config.batch})
    return trials


def _num_params(params):
    return sum(int(w.size) for w in jax.tree.leaves(params))


def summarize(config, history, state, wall_seconds, stop_reason):
    """The fields of ``summary.json`` every protocol shares (its own come from its
    [`Protocol.report`][attnrnn.train.protocol.Protocol])."""
    trained = [r for r in history if "loss" in r]
    return {
        "sequences_seen": int(state.step) * config.batch,
        "steps": int(state.step),
        "num_params": _num_params(state.params),
        "final_loss": trained[-1]["loss"] if trained else None,
        "wall_seconds": wall_seconds,
        "skipped_updates": int(skipped_updates(state)),
        "stop_reason": stop_reason,
        "config": dataclasses.asdict(config),
    }
