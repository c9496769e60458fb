"""Checkpoints with orbax-checkpoint: written atomically (a temporary folder renamed into
place on commit), never with pickle, restored into the exact pytree types saved onto this
process's devices (whatever devices wrote them), and never cut short by Ctrl-C."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import threading
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["CheckpointError", "NoCheckpointError", "CheckpointWarning", "Checkpoints",
           "save_params", "load_params"]


class CheckpointError(RuntimeError):
    """A checkpoint folder that is missing, truncated or not one of ours."""


class NoCheckpointError(CheckpointError):
    """No checkpoint has finished yet."""


class CheckpointWarning(UserWarning):
    """A checkpoint was skipped (it does not restore) in favour of an older one."""


@contextlib.contextmanager
def _uninterrupted():
    """Ctrl-C (SIGINT) waits until the block is done, then interrupts: a save cut short
    would leave orbax's background threads waiting minutes at exit for what never comes.
    Only the main thread can hold signals; elsewhere the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    interrupted = []
    previous = signal.signal(signal.SIGINT, lambda *_: interrupted.append(True))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if interrupted:
        raise KeyboardInterrupt


def _ocp():
    import orbax.checkpoint as ocp  # imported lazily: it is slow to import

    return ocp


def _abstract(tree):
    """What to restore into: each leaf's shape and dtype, placed on this process's first
    device (the caller replicates it onto its own devices), whatever devices wrote it. A
    leaf with no elements (AttentionRNN(0)'s empty history weights) is stored as a scalar:
    orbax cannot save zero-size arrays."""
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape if x.size else (), x.dtype,
                                                       sharding=device), tree)


def _storable(tree):
    """``tree`` as orbax can save it: each zero-size leaf a zero scalar (see ``_abstract``)."""
    return jax.tree.map(lambda x: x if x.size else jnp.zeros((), x.dtype), tree)


def _unstored(tree, like):
    """The inverse of ``_storable``: zero-size leaves back in their shapes."""
    return jax.tree.map(lambda x, l: x if l.size else jnp.zeros(l.shape, l.dtype), tree, like)


class Checkpoints:
    """The training checkpoints of one run folder (``DIR/checkpoints/<step>/``), keeping the
    last ``keep``; each holds the [`TrainState`][attnrnn.train.step.TrainState] and the metrics
    history up to that step."""

    def __init__(self, run_dir, keep=3):
        self.directory = Path(run_dir).absolute() / "checkpoints"
        self._keep = keep
        self._manager = self._open()

    def _open(self):
        ocp = _ocp()
        return ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=self._keep, create=True))

    def save(self, state, history):
        """Saves ``state`` and ``history`` as step ``state.step`` (once: a step already saved,
        e.g. by a periodic checkpoint on the last step, is the same state)."""
        ocp = _ocp()
        if int(state.step) in self._manager.all_steps():
            return
        with _uninterrupted():
            self._manager.save(
                int(state.step),
                args=ocp.args.Composite(state=ocp.args.StandardSave(_storable(state)),
                                        history=ocp.args.JsonSave(list(history))),
            )
            self._manager.wait_until_finished()

    def restore(self, like):
        """The newest ``(state, history)`` that restores; ``like`` is a state of the same
        structure (or its ``jax.eval_shape``).

        A checkpoint that does not restore is reported (a
        [`CheckpointWarning`][attnrnn.train.checkpoints.CheckpointWarning] naming it and why),
        moved aside to ``checkpoints-corrupt/`` beside the checkpoints (kept, not deleted, and
        out of the way of the steps about to be redone), and the next older one is tried. Raises
        [`NoCheckpointError`][attnrnn.train.checkpoints.NoCheckpointError] when none has
        finished, and [`CheckpointError`][attnrnn.train.checkpoints.CheckpointError] (naming
        each and why) when none restores.
        """
        ocp = _ocp()
        steps = sorted(self._manager.all_steps(), reverse=True)
        if not steps:
            raise NoCheckpointError(f"no finished checkpoint in {self.directory}")
        failed = []
        for step in steps:
            try:
                restored = self._manager.restore(
                    step, args=ocp.args.Composite(
                        state=ocp.args.StandardRestore(_abstract(like)),
                        history=ocp.args.JsonRestore()))
            except Exception as error:  # orbax raises many types; name the folder and why
                why = _why(error)
                failed.append((step, why))
                warnings.warn(f"checkpoint {self.directory / str(step)} cannot be restored: "
                              f"{why}; trying the one before", CheckpointWarning, stacklevel=2)
                continue
            if failed:
                self._set_aside(step for step, _ in failed)
            # Through the host: uncommitted arrays, which the loop may place on any devices
            # (committed to this process's first device, a multi-process run could not).
            state = jax.tree.map(lambda x: jnp.asarray(np.asarray(x)), restored.state)
            return _unstored(state, like), list(restored.history)
        raise CheckpointError("no checkpoint restores: " + "; ".join(
            f"{self.directory / str(step)}: {why}" for step, why in failed))

    def _set_aside(self, steps):
        self._manager.close()
        aside = self.directory.with_name("checkpoints-corrupt")
        aside.mkdir(exist_ok=True)
        for step in steps:
            target = aside / str(step)
            n = 1
            while target.exists():
                target, n = aside / f"{step}-{n}", n + 1
            shutil.move(str(self.directory / str(step)), target)
        self._manager = self._open()

    def close(self):
        self._manager.close()


def save_params(path, params):
    """Saves a parameter pytree to the folder ``path`` (which must not exist yet)."""
    checkpointer = _ocp().StandardCheckpointer()
    with _uninterrupted():
        checkpointer.save(Path(path).absolute(), _storable(params))
        checkpointer.wait_until_finished()


def load_params(path, like):
    """Loads what [`save_params`][attnrnn.train.checkpoints.save_params] wrote; ``like`` gives
    the pytree structure (e.g. the output of ``model_init`` or its ``jax.eval_shape``)."""
    path = Path(path).absolute()
    if not os.path.isdir(path):
        raise CheckpointError(f"no saved parameters at {path}")
    try:
        return _unstored(_ocp().StandardCheckpointer().restore(path, _abstract(like)), like)
    except Exception as error:
        raise CheckpointError(f"parameters at {path} cannot be restored: {_why(error)}"
                              ) from error


def _why(error) -> str:
    """Why orbax could not restore, in its own words (the first line), after the likely
    cause: what was saved is not what is asked for (another model or configuration), or
    the files are incomplete."""
    return ("it was saved for another model or configuration, or its files are incomplete "
            f"({type(error).__name__}: {str(error).splitlines()[0][:200]})")
