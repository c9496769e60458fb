"""A training run on disk: the run folder that ``attnrnn train`` writes, and resuming it.

``DIR/config.json`` (the configuration, written first), ``DIR/metrics.jsonl`` (one line per
step; step 0 is the untrained model's held-out evaluation), ``DIR/checkpoints/`` (orbax,
the last three), and at the end ``DIR/params/`` (orbax), ``DIR/curves.png``,
``DIR/confusion.png`` (a classifier trained on a task with a test split: the test split's
confusion matrix, classes by name) and ``DIR/summary.json``. JSON files are replaced
atomically (written beside, then renamed).

Nothing is lost and nothing is stuck:

- The folder appears whole: it is prepared beside ``DIR`` and renamed into place, so a run
  killed at any moment leaves either nothing (or the empty folder the user made) or a folder
  holding ``config.json`` — which ``--resume`` continues: from the newest checkpoint that
  restores, or from the start when none has finished. ``metrics.jsonl`` is cut back to the
  restored step, so it never has duplicates or gaps, and the resumed run ends bitwise like
  an uninterrupted one.
- A checkpoint that does not restore (truncated, say) is reported, moved aside to
  ``DIR/checkpoints-corrupt/``, and the next older one is used; only when none restores is
  it an error.
- One process trains in a folder at a time: ``DIR/.lock`` holds an exclusive ``flock`` for
  the run's duration (the kernel drops it when the process dies, so a killed run never
  leaves the folder locked).

A run of several processes (``jax.distributed``, one per host) is one folder that every
process sees (a shared filesystem: orbax's multi-host checkpoints need one). Process 0 makes
it, holds its lock and writes ``config.json``, ``metrics.jsonl``, ``curves.png`` and
``summary.json``; every process takes part in each checkpoint and in saving ``params/``, and
every process resumes from the same checkpoint. The others learn from process 0 whether
the folder was made (one collective) before they use it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import signal
import sys
import threading
import warnings
from pathlib import Path

import jax
import numpy as np

from attnrnn.train.build import Run, build_run
from attnrnn.train.checkpoints import (CheckpointError, Checkpoints, CheckpointWarning,
                                       NoCheckpointError, save_params)
from attnrnn.train.config import NO_CLIP, TrainConfig
from attnrnn.train.data import DataError
from attnrnn.train.loop import fit, new_train_state, run_options
from attnrnn.train.model_spec import parse_model
from attnrnn.train.plots import plot_confusion, plot_curves
from attnrnn.train.sharding import check_divides, data_parallel_mesh

__all__ = ["RunError", "start_run", "resume_run", "read_metrics", "prepare_folder"]

# What a run killed while its folder was being prepared can leave; never the user's files.
_OWN_LEFTOVERS = (".write-test", ".lock")


class RunError(Exception):
    """A run folder that cannot be used; the message names it."""


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_json_atomic(path: Path, data):
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_json_safe(data), indent=2) + "\n")
    os.replace(tmp, path)


def _write_metrics(path: Path, records, mode):
    with open(path, mode) as f:
        for record in records:
            f.write(json.dumps(_json_safe(record)) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_metrics(run_dir):
    """The records of ``DIR/metrics.jsonl`` as a list of dicts."""
    with open(Path(run_dir) / "metrics.jsonl") as f:
        return [json.loads(line) for line in f if line.strip()]


def prepare_folder(out: Path):
    """Refuses a file, a folder holding anything (but leftovers of our own), or one we cannot
    write — before writing."""
    if out.exists() and not out.is_dir():
        raise RunError(f"--out {out} is a file, not a folder")
    if out.is_dir() and any(p.name not in _OWN_LEFTOVERS for p in out.iterdir()):
        raise RunError(f"--out {out} already holds files; use an empty folder, or --resume {out}")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise RunError(f"cannot write to --out {out}: {error.strerror}") from None


def _lock(folder: Path):
    """An exclusive lock on ``folder`` for as long as the returned file stays open; refused
    when another process holds it."""
    try:
        import fcntl
    except ImportError:  # no flock (Windows): run unlocked
        return None
    handle = open(folder / ".lock", "a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise RunError(f"{folder} is in use by another attnrnn process (it holds "
                       f"{folder / '.lock'}); wait for it to finish") from None
    return handle


def _create_run_folder(out: Path, config_record) -> object:
    """The run folder with ``config.json`` and an empty ``metrics.jsonl``, made beside ``out``
    and renamed into place (so it appears whole); returns the held lock."""
    staging = out.with_name(f".{out.name}.creating-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    lock = _lock(staging)
    write_json_atomic(staging / "config.json", config_record)
    (staging / "metrics.jsonl").write_text("")
    for leftover in _OWN_LEFTOVERS:  # a killed run's (its lock died with it)
        (out / leftover).unlink(missing_ok=True)
    os.replace(staging, out)  # onto the empty folder prepare_folder checked
    return lock


def _primary() -> bool:
    """Process 0: the one that writes the run folder's files (the only one, in one process)."""
    return jax.process_index() == 0


def _on_primary(action, what, out):
    """``action()`` on process 0; every process learns whether it succeeded (process 0's
    error is raised there, a one-line ``RunError`` on the others), and then sees ``out``."""
    error, result = None, None
    if _primary():
        try:
            result = action()
        except RunError as caught:
            error = caught
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        ok = bool(multihost_utils.broadcast_one_to_all(np.int32(error is None)))
        if not ok and not _primary():
            raise RunError(f"process 0 could not {what} (its message says why)")
    if error is not None:
        raise error
    if not out.is_dir():
        raise RunError(f"process {jax.process_index()} does not see {out}, which process 0 "
                       "made: a run of several hosts needs --out on a filesystem every host "
                       "sees")
    return result


def _sync(name):
    """Every process waits here for the others (no-op in one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(f"attnrnn: {name}")


def _check_run(run: Run, options):
    """What ``build_run`` leaves to the run: the device count and the batch split, and the
    state built (as shapes only), before anything is written."""
    batch = run.config.batch
    check_divides(batch, data_parallel_mesh(options.devices, batch), what="--batch")
    jax.eval_shape(lambda: new_train_state(run))


def start_run(config: TrainConfig, out, *, task=None, **options):
    """Trains per ``config`` into the new run folder ``out``; returns the summary dict.
    ``task``: a [`Task`][attnrnn.train.task.Task] to train on instead of ``config.task``
    (e.g. [`array_task`][attnrnn.train.data.array_task] of your arrays): ``config.json``
    records its name, and [`resume_run`][attnrnn.train.run.resume_run] must be given the same
    task again. ``**options``: the run options, the fields of
    [`RunOptions`][attnrnn.train.loop.RunOptions] (``checkpoint_every=100, progress=False``)."""
    out, options = Path(out), run_options(options)
    run = build_run(config, task=task, stop_when_solved=options.stop_when_solved)
    _check_run(run, options)
    record = {"config": dataclasses.asdict(run.config),
              "checkpoint_every": options.checkpoint_every,
              "stop_when_solved": options.stop_when_solved}
    if task is not None:  # recorded by name; resume_run must be given it again
        record.update(given_task=task.name, config={**record["config"], "task": task.name})

    def make_folder():
        prepare_folder(out)
        return _create_run_folder(out, record)

    lock = _on_primary(make_folder, f"make the run folder {out}", out)
    try:
        return _execute(run, out, None, [], options)
    finally:
        if lock is not None:
            lock.close()


def resume_run(out, *, task=None, steps=None, **options):
    """Continues the run in folder ``out`` from its latest checkpoint; returns the summary.
    A run of a ``--data`` file refuses a file that changed since (its sha256 is recorded); a
    run started with ``task=`` needs the same task (by name) here. ``steps``: a new budget
    (``config.json`` records it), to extend a run, finished or not; it cannot be below the
    steps already made. A finished run with nothing left to do is left as it is (its summary
    returned). ``**options``: as ``start_run``'s, but the run's own ``checkpoint_every`` and
    ``stop_when_solved`` (as ``config.json`` records them) hold."""
    out = Path(out)
    saved, run = _saved_run(out, steps, task)
    options = run_options(options)._replace(checkpoint_every=saved.get("checkpoint_every"),
                                            stop_when_solved=run.stop_when_solved)
    config = run.config
    lock = _on_primary(lambda: _lock(out), f"take the lock of {out}", out)
    try:
        checkpoints = Checkpoints(out)
        state, history = _restore(checkpoints, run)
        made = 0 if state is None else int(state.step)
        if made > config.steps:
            raise RunError(f"--resume {out}: --steps {config.steps} is fewer than the {made} "
                           "steps the run has made")
        finished = _finished_summary(out)
        if finished is not None and finished["steps"] == made and (
                made == config.steps or finished["stop_reason"] != "completed"):
            return finished  # nothing left to do: the results stay as they were
        _sync("restored")  # every process has read the folder before process 0 changes it
        if _primary():
            if steps is not None and steps != saved["config"]["steps"]:
                write_json_atomic(out / "config.json",
                                  {**saved, "config": {**saved["config"], "steps": steps}})
            # Drop what was logged after the checkpoint: those steps are about to be redone.
            _write_metrics(out / "metrics.jsonl.tmp", history, "w")
            os.replace(out / "metrics.jsonl.tmp", out / "metrics.jsonl")
        return _execute(run, out, state, history, options, checkpoints)
    except CheckpointError as error:
        raise RunError(f"--resume {out}: {error}") from None
    finally:
        if lock is not None:
            lock.close()


def _saved_run(out: Path, steps, task):
    """``config.json``'s record and the run it describes (with the new budget ``steps``),
    built (``build_run``) on the ``task`` given, if the run needs one."""
    try:
        saved = json.loads((out / "config.json").read_text())
        fields = dict(saved["config"])
        if saved.get("given_task") is not None:  # its name is no task TrainConfig can build
            fields["task"] = TrainConfig.task
        if "clip" in fields and fields["clip"] is None:  # an older record of no clipping
            fields["clip"] = NO_CLIP
        if fields.get("model") == "attention:inf":  # recorded when that meant the bounded model
            fields["model"] = str(parse_model("attention:inf,qk=0.7"))
        config = TrainConfig(**fields)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise RunError(
            f"--resume {out} is not an attnrnn run folder (config.json: {error})") from None
    if steps is not None:  # a new budget: checked as a config value, not as the folder
        config = config.replace(steps=steps)
    given = saved.get("given_task")
    if given is not None and (task is None or task.name != given):
        raise RunError(f"--resume {out}: the run trained on a task given in Python ({given!r}); "
                       f"resume it with resume_run({str(out)!r}, task=<that task>)"
                       + (f", not {task.name!r}" if task is not None else ""))
    try:
        run = build_run(config, task=task, stop_when_solved=saved.get("stop_when_solved", False))
    except DataError as error:  # the run's --data file is gone or has changed
        raise RunError(f"--resume {out}: {error}") from None
    return saved, run


def _restore(checkpoints, run):
    """The newest checkpoint's ``(state, history)`` that restores, or ``(None, [])`` when
    none has finished (the run starts over); a checkpoint passed over is reported only when
    one did restore."""
    like = jax.eval_shape(lambda: new_train_state(run))
    with warnings.catch_warnings(record=True) as skipped:
        warnings.simplefilter("always", CheckpointWarning)
        try:
            state, history = checkpoints.restore(like)
        except NoCheckpointError:  # killed before the first checkpoint: start over
            return None, []
    for warning in skipped:
        warnings.warn(warning.message, warning.category, stacklevel=3)
    return state, history


def _finished_summary(out: Path):
    """The run's ``summary.json`` if it finished (None if not, or unreadable)."""
    try:
        return json.loads((out / "summary.json").read_text())
    except (OSError, ValueError):
        return None


_SWALLOWED = []  # Ctrl-C that only sys.unraisablehook saw (see interrupts_kept)


@contextlib.contextmanager
def interrupts_kept():
    """Ctrl-C raises ``KeyboardInterrupt`` wherever Python is at that moment; where that is a
    callback Python cannot raise from (JAX's garbage-collector callback), Python prints a
    traceback and goes on as if nothing had happened. In this block such an interrupt is
    kept, quietly: the run stops at its next chunk end, as after any Ctrl-C (or, when it came
    after the last one, finishes)."""
    previous = sys.unraisablehook
    _SWALLOWED.clear()

    def keep(unraisable):
        if issubclass(unraisable.exc_type, KeyboardInterrupt):
            _SWALLOWED.append(True)
        else:
            previous(unraisable)

    sys.unraisablehook = keep
    try:
        yield
    finally:
        sys.unraisablehook = previous


@contextlib.contextmanager
def _interrupts_at_chunk_ends(enabled):
    """Ctrl-C (SIGINT) waits for the end of the chunk under way (``eval_every`` steps), where
    the run saves the state it reached and stops, so ``--resume`` continues from there; a run
    without ``--checkpoint-every`` kept nothing. A second Ctrl-C interrupts at once. Yields a
    list that is non-empty once Ctrl-C was pressed. Only a run of one process, in the main
    thread: a checkpoint is saved by every process together, and one interrupted process of
    several cannot save alone (so an interrupt ``interrupts_kept`` caught is acted on only
    here, where a process saves alone)."""
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield []
        return
    requested = _SWALLOWED  # one list: an interrupt kept before or during the run counts

    def at_chunk_end(*_):
        requested.append(True)
        signal.signal(signal.SIGINT, signal.default_int_handler)  # the next one: at once

    previous = signal.signal(signal.SIGINT, at_chunk_end)
    try:
        yield requested
    finally:
        signal.signal(signal.SIGINT, previous)


def _execute(run, out, state, history, options, checkpoints=None):
    """Trains the run in folder ``out`` from ``state`` (None: fresh), writing its records and
    checkpoints as it goes and its results at the end."""
    checkpoints = checkpoints or Checkpoints(out)
    checkpoint_every = options.checkpoint_every
    if checkpoint_every:
        # Checkpoints fall on chunk boundaries, so a resumed run replays the same chunks.
        checkpoint_every = -(-checkpoint_every // run.config.eval_every) * run.config.eval_every

    def on_chunk(state, history, records):
        if _primary():
            _write_metrics(out / "metrics.jsonl", records, "a")
        step = int(state.step)
        saved = bool(checkpoint_every and step and step % checkpoint_every == 0)
        if saved:
            checkpoints.save(state, history)  # by every process
        if interrupt_requested:  # Ctrl-C during the chunk: keep what it reached, then stop
            if not saved:
                checkpoints.save(state, history)
            raise KeyboardInterrupt

    with _interrupts_at_chunk_ends(jax.process_count() == 1) as interrupt_requested:
        state, history, summary = fit(run, state=state, history=history, on_chunk=on_chunk,
                                      **options._replace(
                                          progress=options.progress and _primary())._asdict())
    checkpoints.save(state, history)  # the final state, or the last good one after skips
    checkpoints.close()
    if _primary():  # a run killed while writing its results left some: they are redone whole
        for stale in [out / "params", *out.glob("params.orbax-checkpoint-tmp*")]:
            shutil.rmtree(stale, ignore_errors=True)
    _sync("results cleared")
    save_params(out / "params", state.params)
    if _primary():
        plot_curves({run.config.model: history}, out / "curves.png",
                    title=f"{run.config.model}, {task_title(summary['config'])}, "
                    f"hidden {run.config.hidden}")
        if summary.get("test_confusion") is not None:
            plot_confusion(summary["test_confusion"], summary["class_names"],
                           out / "confusion.png",
                           title=f"{run.config.model} on {summary['config']['task']}: test split")
        write_json_atomic(out / "summary.json", summary)
    return summary


def task_title(config: dict) -> str:
    """A run's task as a title names it: the temporal-order level, an adding length."""
    task = config["task"]
    if task == "temporal-order":
        return f"{task} ({config['level']})"
    return f"{task} (T = {config['length']})" if config.get("length") else task
