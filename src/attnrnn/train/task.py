"""The task: what a model trains on, as one value (a generator of batches, or arrays with a
test split), and the batches a training step draws from it."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["Task", "next_batch", "check_batch_size"]


class Task(NamedTuple):
    """A source of sequences with what a model needs to know about it.

    ``sample(key, batch_size) -> (xs, labels, mask)`` (``(xs, labels)`` for a task made from
    arrays without a mask: every step counts); ``per_step`` says whether labels are
    ``(B, T)`` (one per step) or ``(B,)`` (one per sequence, read from the last valid state);
    ``classes`` is the number of output units (1 for a regression). ``regression`` tasks
    have float targets and a squared-error loss; the others integer classes.

    A generator (the tasks of [`make_task`][attnrnn.train.tasks.make_task]) draws every batch
    afresh from a key. A task made from arrays
    ([`attnrnn.train.data.array_task`][attnrnn.train.data.array_task]) also holds its
    ``train`` and ``test`` splits, each ``(xs, labels)`` or ``(xs, labels, mask)``: training
    walks through ``train`` in epochs (see [`next_batch`][attnrnn.train.task.next_batch])
    and runs are evaluated on ``test``. ``shuffle`` says whether each epoch visits ``train``
    in a fresh order drawn from the run's key, or in the stored order. ``class_names``: the
    classes' names (labels given as strings), or None (the classes are ``0..C-1``).
    """

    name: str
    features: int
    classes: int
    per_step: bool
    sample: Callable
    regression: bool = False
    train: tuple | None = None
    test: tuple | None = None
    shuffle: bool = True
    class_names: tuple | None = None

    def __repr__(self):
        """The task's description, its splits by shape (not every array)."""
        def split(arrays):
            return None if arrays is None else "(" + ", ".join(
                f"{a.dtype}{list(a.shape)}" for a in arrays) + ")"

        fields = {"name": repr(self.name), "features": self.features, "classes": self.classes,
                  "per_step": self.per_step, "regression": self.regression,
                  "train": split(self.train), "test": split(self.test), "shuffle": self.shuffle,
                  **({"class_names": self.class_names} if self.class_names else {})}
        return "Task(" + ", ".join(f"{k}={v}" for k, v in fields.items()) + ")"


def check_batch_size(task: Task, batch_size):
    """A batch of a task made from arrays is at most its training set (an epoch)."""
    if task.train is not None and batch_size > task.train[0].shape[0]:
        raise ValueError(f"batch of {batch_size} sequences is more than the "
                         f"{task.train[0].shape[0]} training sequences of {task.name}")


def next_batch(task: Task, key, step, batch_size, train=None):
    """The training batch of step ``step`` and the key after it: ``(key, batch)``, the batch as
    ``task.sample`` gives it.

    A generator splits ``key`` and samples from one half (the other is returned). A task made
    from arrays takes sequences ``step * batch_size`` to ``(step + 1) * batch_size - 1`` of an
    endless walk through ``train`` (``task.train`` unless given: pass it as an argument of a
    jitted function so it is not baked into the compiled program): epoch ``e`` is a
    permutation of the training set drawn from ``fold_in(key, e)`` (the stored order when
    ``task.shuffle`` is False), so every sequence is seen once per epoch and batch ``step`` is
    a function of ``(key, step)`` alone — which makes a resumed run draw the same batches. The
    key is returned unchanged. ``batch_size`` must be at most the training set's size.
    """
    if task.train is None:
        key, data_key = jax.random.split(key)
        return key, task.sample(data_key, batch_size)
    check_batch_size(task, batch_size)
    train = task.train if train is None else train
    size = train[0].shape[0]
    position = step * batch_size + jnp.arange(batch_size)
    epoch, index = position // size, position % size
    if task.shuffle:  # a batch spans at most two epochs (batch_size <= size)
        order = [jax.random.permutation(jax.random.fold_in(key, e), size)
                 for e in (epoch[0], epoch[0] + 1)]
        index = jnp.where(epoch == epoch[0], order[0][index], order[1][index])
    return key, jax.tree.map(lambda a: a[index], tuple(train))
