"""A run built once: [`build_run`][attnrnn.train.build.build_run] turns a
[`TrainConfig`][attnrnn.train.config.TrainConfig] into the task, model, optimizer and protocol
it trains with, checks that they fit together, and hands them on as one value
([`Run`][attnrnn.train.build.Run]) to ``fit``, ``fit_trials``, ``new_train_state`` and the run
folders' checks, none of which builds any of them again."""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import optax

from attnrnn.train.config import TrainConfig
from attnrnn.train.models import Model
from attnrnn.train.protocol import Protocol, make_protocol, stop_rule
from attnrnn.train.task import Task, check_batch_size

__all__ = ["Run", "build_run"]


class Run(NamedTuple):
    """What a run trains: ``config`` (resolved), and the ``task``, ``model``, ``optimizer``
    (unguarded: the training step skips non-finite updates itself) and ``protocol`` built
    from it once; ``stop_when_solved``, whether the protocol ends the run when solved."""

    config: TrainConfig
    task: Task
    model: Model
    optimizer: optax.GradientTransformation
    protocol: Protocol
    stop_when_solved: bool = False


def build_run(config: TrainConfig, *, task=None, model=None, optimizer=None,
              stop_when_solved=False) -> Run:
    """``config``'s run: its task (or ``task``, a [`Task`][attnrnn.train.task.Task] to use
    instead of the config's), model (or ``model``), optimizer (or ``optimizer``) and protocol
    (stopping at the first solved evaluation with ``stop_when_solved``), checked to fit
    together: the batch against the task, the model's architecture against the task, the
    protocol against what the task has."""
    config = config.resolve()
    task = _one_task(config, task)
    check_batch_size(task, config.batch)
    model = model or config.build_model(task)
    if config.protocol == "1997" and config.batch > stop_rule(task.name).window:
        raise ValueError(f"batch must be at most the 1997 rule's window of "
                         f"{stop_rule(task.name).window} sequences, got {config.batch}")
    protocol = make_protocol(task, config.protocol, heldout=config.heldout,
                             stop_when_solved=stop_when_solved)
    return Run(config, task, model, optimizer or config.make_optimizer(), protocol,
               stop_when_solved)


def _one_task(config: TrainConfig, task):
    """``task``, or the config's when None. A ``task`` given beside a config that names
    another one is refused: one of them would be ignored without a word. (The config's
    default task names none: it means "unset".)"""
    if task is None:
        return config.make_task()
    default = next(f.default for f in dataclasses.fields(TrainConfig) if f.name == "task")
    if config.data is not None or config.task not in (default, task.name):
        named = f"--data {config.data}" if config.data is not None else f"task={config.task!r}"
        raise ValueError(f"fit got task={task.name!r} and a config with {named}: name the task "
                         "once (the config's, or fit's task= with the config's task left at "
                         "its default)")
    return task
