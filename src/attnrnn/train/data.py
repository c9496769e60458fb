"""Tasks made from arrays: your own sequences, in memory or in an ``.npz`` file, and MNIST-1D.

A task made from arrays holds a training and a test split, each ``(xs, labels)`` or
``(xs, labels, mask)``: ``xs (N, T, n)`` (or ``(N, T)``, one feature per step), integer
``labels`` — ``(N,)``, one class per sequence, or ``(N, T)``, one per step — and an optional
boolean ``mask (N, T)`` (True on the steps that count). A split without a mask stays without
one: every step counts, and the recurrences run without masking (a mask of all True would
give the same result, slower). Training walks through the training
split in epochs ([`next_batch`][attnrnn.train.tasks.next_batch]); runs are evaluated on the
whole test split (the ``test`` protocol of [`attnrnn.train.protocol`][attnrnn.train.protocol]).

Everything is checked on the host before anything is traced, and a problem is a
[`DataError`][attnrnn.train.data.DataError] (a ``ValueError``) naming the array (as the
``.npz`` file names it: ``x_train``, ``y_train``, ``mask_train``, ``x_test``, ``y_test``,
``mask_test``), what it holds and what was expected. Files are read with
``numpy.load(allow_pickle=False)``: nothing is ever unpickled.
"""

from __future__ import annotations

import functools
import hashlib
import os
import random
import zipfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from attnrnn.train.tasks import Task

__all__ = ["DataError", "array_task", "load_npz", "file_sha256", "mnist1d", "NPZ_KEYS"]

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
NPZ_OPTIONAL = ("mask_train", "mask_test")


class DataError(ValueError):
    """Data that cannot be trained on; the message names the array (and the file) and why."""


def _split(where, part, xs, labels, mask):
    """One split checked and converted: ``(xs float32 (N, T, n), labels int32)``, and the
    ``mask`` (bool, every sequence with a True step) after them when there is one. Integer and
    boolean ``xs`` become float32 (the library's functions take floats only; a file holds
    what it holds)."""
    x_name, y_name, m_name = (f"{where}{name}_{part}" for name in ("x", "y", "mask"))
    arrays = {}
    for name, value in ((x_name, xs), (y_name, labels), (m_name, mask)):
        if value is None:
            continue
        array = np.asarray(value)
        if array.dtype == object or not (np.issubdtype(array.dtype, np.number)
                                         or array.dtype == bool):
            raise DataError(f"{name} must be a numeric array, got dtype {array.dtype}")
        arrays[name] = array
    xs, labels = arrays[x_name], arrays[y_name]
    if xs.ndim == 2:
        xs = xs[..., None]
    if xs.ndim != 3 or 0 in xs.shape:
        raise DataError(f"{x_name} must be (N, T, features) or (N, T) with N, T >= 1, got "
                        f"shape {arrays[x_name].shape}")
    if np.iscomplexobj(xs) or not np.all(np.isfinite(xs)):
        raise DataError(f"{x_name} must hold finite real numbers; it holds "
                        + ("complex values" if np.iscomplexobj(xs) else "NaN or inf"))
    n, length = xs.shape[:2]
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{y_name} must hold integer class labels, got dtype {labels.dtype}")
    if labels.shape not in ((n,), (n, length)):
        raise DataError(f"{y_name} must have shape ({n},) (a class per sequence) or "
                        f"({n}, {length}) (a class per step) for {x_name} of shape "
                        f"{xs.shape}, got {labels.shape}")
    if labels.min() < 0:
        raise DataError(f"{y_name} holds the label {labels.min()}; labels are classes 0, 1, …")
    if mask is not None:
        mask = arrays[m_name]
        if mask.dtype != bool or mask.shape != (n, length):
            raise DataError(f"{m_name} must be a boolean array of shape ({n}, {length}), got "
                            f"{mask.dtype} {mask.shape}")
        empty = np.flatnonzero(~mask.any(axis=1))
        if empty.size:  # it would be classified from the initial state alone
            raise DataError(f"{m_name} marks no step of sequence {int(empty[0])}"
                            + (f" (and {empty.size - 1:,} more)" if empty.size > 1 else "")
                            + "; every sequence needs at least one True step (drop the empty "
                            "ones)")
    split = (xs.astype(np.float32), labels.astype(np.int32))
    return split if mask is None else (*split, mask)


def array_task(train, test, *, name="arrays", classes=None, shuffle=True, where="") -> Task:
    """A [`Task`][attnrnn.train.tasks.Task] of your own sequences, with a test split.

    Args:
      train: ``(xs, labels)`` or ``(xs, labels, mask)``: ``xs (N, T, n)`` or ``(N, T)``
        (numbers, finite), ``labels (N,)`` or ``(N, T)`` (integers ``>= 0``), ``mask (N, T)``
        bool. Arrays of any kind numpy reads (numpy, jax, lists).
      test: the same for the test split (its own ``N`` and ``T``; the same ``n`` and kind of
        labels; a mask in both splits or in neither).
      name: how the run's records name the task.
      classes: the number of classes; default ``1 + `` the largest training label, refused
        when more than half of those classes have no training sequence (a stray label would
        otherwise build a model of that many outputs). Test labels must be below it.
      shuffle: visit the training split in a fresh order every epoch (drawn from the run's
        key); False keeps the stored order (MNIST-1D's protocol).
      where: a prefix for error messages (``load_npz`` passes the file's name).

    Returns:
      a task whose ``sample(key, B)`` draws ``B`` training sequences at random (with
      replacement, for your own loops), whose ``train``/``test`` hold the splits as jax arrays
      (``(xs, labels)``, or ``(xs, labels, mask)`` where a mask was given),
      and which [`fit`][attnrnn.train.loop.fit] trains in epochs and evaluates on ``test``.
    """
    for part, value in (("train", train), ("test", test)):
        if not isinstance(value, (tuple, list)) or len(value) not in (2, 3):
            raise DataError(f"{where}{part} must be (xs, labels) or (xs, labels, mask), got "
                            f"{type(value).__name__}"
                            + (f" of length {len(value)}" if isinstance(value, (tuple, list))
                               else ""))
    train = _split(where, "train", *train, *([None] * (3 - len(train))))
    test = _split(where, "test", *test, *([None] * (3 - len(test))))
    (x_train, y_train), (x_test, y_test) = train[:2], test[:2]
    if x_train.shape[-1] != x_test.shape[-1]:
        raise DataError(f"{where}x_train has {x_train.shape[-1]} features per step but x_test "
                        f"{x_test.shape[-1]}; both splits must have the same")
    if (y_train.ndim == 2) != (y_test.ndim == 2):
        raise DataError(f"{where}y_train and y_test must both be per sequence (N,) or both per "
                        f"step (N, T), got {y_train.shape} and {y_test.shape}")
    masked = [name for name, split in (("mask_train", train), ("mask_test", test))
              if len(split) == 3 and split[2] is not None]
    if len(masked) == 1:  # the other split's padding would be read as steps
        other = "mask_test" if masked == ["mask_train"] else "mask_train"
        raise DataError(f"{where}{masked[0]} is given but {other} is not: the split without a "
                        "mask would be read whole, its padding as steps; give both masks (all "
                        "True where a split has no padding) or neither")
    if classes is None:
        classes = int(y_train.max()) + 1
        if classes == 1:
            raise DataError(f"{where}y_train holds one class (0): a classifier needs two or "
                            "more (a loss of 0 from the start, nothing learned)")
        unseen = classes - len(np.unique(y_train))
        if unseen > classes // 2:  # most classes never seen: a stray label, not a class
            raise DataError(
                f"{where}y_train holds the label {int(y_train.max())}, so the classes would be "
                f"0..{classes - 1}, but {unseen:,} of those {classes:,} classes have no "
                "training sequence; labels must be 0..C-1 with most classes present (map "
                "them to that range first)")
    classes = int(classes)
    for label_name, labels in (("y_train", y_train), ("y_test", y_test)):
        if labels.max() >= classes:
            raise DataError(f"{where}{label_name} holds the label {labels.max()}, out of "
                            f"range for {classes} classes (0..{classes - 1}; by default the "
                            "classes are those of y_train)")
    splits = tuple(tuple(map(jnp.asarray, split)) for split in (train, test))

    def sample(key, batch_size):
        index = jax.random.randint(key, (batch_size,), 0, x_train.shape[0])
        return tuple(a[index] for a in splits[0])

    return Task(name, x_train.shape[-1], classes, y_train.ndim == 2, sample,
                train=splits[0], test=splits[1], shuffle=shuffle)


def file_sha256(path) -> str:
    """The SHA-256 of a file's bytes (hex): what a run records of its ``--data`` file."""
    path = Path(path).absolute()
    stat = path.stat()
    return _file_sha256(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=16)
def _file_sha256(path, _mtime, _size) -> str:
    """Cached by the file's path, modification time and size (a config and its task ask for
    it several times)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_npz(path, *, sha256=None) -> Task:
    """The [`array_task`][attnrnn.train.data.array_task] stored in an ``.npz`` file (as
    ``numpy.savez`` writes it) with the arrays ``x_train, y_train, x_test, y_test`` and
    optionally ``mask_train, mask_test``; any other name is refused (a misspelt mask would
    otherwise be ignored). The task is named by the file's name; epochs are shuffled.

    ``sha256``: the hash the file must have (a resumed run checks that its data did not
    change); a different file is a [`DataError`][attnrnn.train.data.DataError].
    """
    path = Path(path)
    try:
        stat = os.stat(path)
    except OSError as error:
        raise DataError(f"cannot read --data {path}: {error.strerror}") from None
    return _load_npz(str(path.absolute()), stat.st_mtime_ns, stat.st_size, sha256)


@functools.lru_cache(maxsize=8)
def _load_npz(path, _mtime, _size, sha256):
    """Cached by the file's path, modification time and size (a config builds its task
    several times)."""
    where = f"{path}: "
    actual = file_sha256(path)
    if sha256 is not None and actual != sha256:
        raise DataError(f"{path} is not the file the run was made with: its sha256 is "
                        f"{actual}, the run recorded {sha256}")
    unreadable = (ValueError, OSError, EOFError, zipfile.BadZipFile)
    if not zipfile.is_zipfile(path):  # numpy would call a text file "pickled data"
        with open(path, "rb") as f:
            npy = f.read(6) == b"\x93NUMPY"
        raise DataError(f"{path} is a single .npy array, not an .npz archive of "
                        f"{', '.join(NPZ_KEYS)}" if npy else
                        f"{path} is not an .npz archive: not a zip file (numpy.savez writes "
                        "one)")
    try:
        archive = np.load(path, allow_pickle=False)
    except unreadable as error:
        raise DataError(f"{path} is not an .npz archive ({type(error).__name__}: "
                        f"{str(error)[:120]})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"{path} is a single .npy array, not an .npz archive of "
                        f"{', '.join(NPZ_KEYS)}")
    with archive:
        missing = [k for k in NPZ_KEYS if k not in archive.files]
        unknown = sorted(set(archive.files) - set(NPZ_KEYS) - set(NPZ_OPTIONAL))
        if missing or unknown:
            problems = ([f"missing {', '.join(missing)}"] if missing else []) + (
                [f"unexpected {', '.join(unknown)}"] if unknown else [])
            raise DataError(f"{where}{'; '.join(problems)} (an .npz needs "
                            f"{', '.join(NPZ_KEYS)}; optional: {', '.join(NPZ_OPTIONAL)})")
        arrays = {}
        for name in archive.files:
            try:
                arrays[name] = archive[name]
            except ValueError:  # numpy refuses an object array without pickle
                raise DataError(f"{where}{name} is an object array; only numeric arrays are "
                                "read (attnrnn never unpickles)") from None
            except unreadable as error:
                raise DataError(f"{where}{name} cannot be read ({type(error).__name__}: "
                                f"{str(error)[:120]})") from None
    return array_task((arrays["x_train"], arrays["y_train"], arrays.get("mask_train")),
                      (arrays["x_test"], arrays["y_test"], arrays.get("mask_test")),
                      name=Path(path).name, where=where)


@functools.lru_cache(maxsize=2)
def mnist1d(*, shuffle_time=False) -> Task:
    """MNIST-1D (Greydanus 2020): 4,000 training and 1,000 test sequences of 40 steps, one
    feature, ten classes — generated offline by the ``mnist1d`` package
    (``make_dataset(get_dataset_args())``, the data of the paper's tables; ``pip install
    'attnrnn[data]'``), never downloaded, and its pickle never loaded. ``shuffle_time``:
    the paper's shuffled variant (``shuffle_seq=True``: one fixed permutation of the 40 time
    steps for every sequence). Batches are taken in the stored order, as in the paper's
    training script; the global ``random``/``numpy.random`` state the package seeds is
    restored afterwards.
    """
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError:
        raise DataError("the mnist1d task needs the mnist1d package: pip install "
                        "'attnrnn[data]' (or pip install mnist1d)") from None
    args = get_dataset_args()
    args.shuffle_seq = bool(shuffle_time)
    saved = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(saved[0])
        random.setstate(saved[1])
    return array_task((data["x"], data["y"]), (data["x_test"], data["y_test"]),
                      name="mnist1d,shuffle" if shuffle_time else "mnist1d", classes=10,
                      shuffle=False)
