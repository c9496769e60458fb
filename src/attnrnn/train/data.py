"""Tasks made from arrays: your own sequences, in memory or in an ``.npz`` file, and MNIST-1D.

A task made from arrays holds a training and a test split, each ``(xs, labels)`` or
``(xs, labels, mask)``: ``xs (N, T, n)`` (or ``(N, T)``, one feature per step; or a list of
sequences of different lengths, padded and masked here), integer ``labels`` (or strings:
class names) — ``(N,)``, one class per sequence, or ``(N, T)``, one per step — and an optional
boolean ``mask (N, T)`` (True on the steps that count). A split without a mask stays without
one: every step counts, and the recurrences run without masking (a mask of all True would
give the same result, slower). Training walks through the training
split in epochs ([`next_batch`][attnrnn.train.task.next_batch]); runs are evaluated on the
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

from attnrnn.train.task import Task

__all__ = ["DataError", "array_task", "load_npz", "file_sha256", "mnist1d", "NPZ_KEYS"]

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
NPZ_OPTIONAL = ("mask_train", "mask_test")


class DataError(ValueError):
    """Data that cannot be trained on; the message names the array (and the file) and why."""


def _is_sequence_list(xs) -> bool:
    """A list (or tuple) of sequences ``(T_i, n)`` or ``(T_i,)``, rather than one array."""
    return isinstance(xs, (list, tuple)) and len(xs) > 0 and all(
        np.ndim(x) >= 1 for x in xs)


def _padded(where, part, xs, labels, mask):
    """A split given as a list of sequences of lengths ``T_i``, zero-padded to the longest and
    masked (True on each sequence's own steps); per-step labels given as a list are padded
    alike (with each sequence's first label: the mask hides it). Other splits pass as they
    are. Returns ``(xs, labels, mask, padded_here)``."""
    if not _is_sequence_list(xs):
        return xs, labels, mask, False
    x_name, y_name = f"{where}x_{part}", f"{where}y_{part}"
    if mask is not None:
        raise DataError(f"{where}mask_{part} is given with x_{part} as a list of sequences; "
                        "a list is padded and masked here: give the list alone, or padded "
                        "arrays with their mask")
    sequences = [np.asarray(x) for x in xs]
    sequences = [x[:, None] if x.ndim == 1 else x for x in sequences]
    for i, x in enumerate(sequences):
        if x.ndim != 2 or x.shape[0] == 0 or x.shape[1:] != sequences[0].shape[1:]:
            raise DataError(f"{x_name}[{i}] has shape {np.shape(xs[i])}; each sequence must be "
                            f"(T_i, {sequences[0].shape[1]}) or (T_i,) with T_i >= 1 "
                            "(the same features in every sequence)")
    lengths = np.array([x.shape[0] for x in sequences])
    longest = int(lengths.max())
    mask = np.arange(longest) < lengths[:, None]
    padded = np.zeros((len(sequences), longest, sequences[0].shape[1]),
                      np.result_type(*sequences))
    for i, x in enumerate(sequences):
        padded[i, :len(x)] = x
    if _is_sequence_list(labels):  # one label per step
        steps = [np.asarray(y) for y in labels]
        if len(steps) != len(sequences) or any(
                y.shape != (n,) for y, n in zip(steps, lengths)):
            raise DataError(f"{y_name} is a list of per-step labels; it needs one (T_i,) array "
                            f"per sequence of {x_name}, got {len(steps)} for "
                            f"{len(sequences)} sequences")
        labels = np.stack([np.concatenate([y, np.repeat(y[:1], longest - len(y))])
                           for y in steps])
    return padded, labels, mask, True


def _split(where, part, xs, labels, mask):
    """One split checked and converted: ``(xs float32 (N, T, n), labels)``, and the ``mask``
    (bool, every sequence with a True step) after them when there is one. Integer and
    boolean ``xs`` become float32 (the library's functions take floats only; a file holds
    what it holds); labels stay integers or strings (mapped to classes by
    [`array_task`][attnrnn.train.data.array_task])."""
    x_name, y_name, m_name = (f"{where}{name}_{part}" for name in ("x", "y", "mask"))
    arrays = {}
    for name, value in ((x_name, xs), (y_name, labels), (m_name, mask)):
        if value is None:
            continue
        array = np.asarray(value)
        if name == y_name and array.dtype.kind in "US":
            arrays[name] = array
            continue
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
    named = labels.dtype.kind in "US"
    if not (named or np.issubdtype(labels.dtype, np.integer)):
        raise DataError(f"{y_name} must hold integer class labels or strings (class names), "
                        f"got dtype {labels.dtype}")
    if labels.shape not in ((n,), (n, length)):
        raise DataError(f"{y_name} must have shape ({n},) (a class per sequence) or "
                        f"({n}, {length}) (a class per step) for {x_name} of shape "
                        f"{xs.shape}, got {labels.shape}")
    if not named and labels.min() < 0:
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
    split = (xs.astype(np.float32), labels if named else labels.astype(np.int32))
    return split if mask is None else (*split, mask)


def _classes(where, classes, y_train, y_test):
    """``(classes, names, y_train, y_test)``: the number of classes, their names (None for
    integer labels without names) and the labels as int32 classes.

    String labels are classes in sorted order (or in the order of ``classes`` given as a list
    of names); integer labels are their own classes ``0..C-1``, ``C`` being ``classes`` or
    ``1 +`` the largest training label (refused when most of those classes have no training
    sequence: a stray label)."""
    named, given = y_train.dtype.kind in "US", classes is not None
    if named != (y_test.dtype.kind in "US"):
        kinds = ("strings", "integers") if named else ("integers", "strings")
        raise DataError(f"{where}y_train holds {kinds[0]} and y_test {kinds[1]} (dtypes "
                        f"{y_train.dtype}, {y_test.dtype}); both splits must have string "
                        "labels or both integers")
    names = None
    if classes is not None and not isinstance(classes, (int, np.integer)):
        names = tuple(_text(c) for c in classes)
        if len(set(names)) != len(names) or len(names) < 2:
            raise DataError(f"classes must be an int or a list of two or more distinct class "
                            f"names, got {list(names)}")
        classes = len(names)
    if named:
        if names is None:
            names = tuple(sorted({_text(y) for y in np.unique(y_train)}))
        index = {name: i for i, name in enumerate(names)}
        mapped = []
        for label_name, labels in (("y_train", y_train), ("y_test", y_test)):
            unknown = sorted({_text(y) for y in np.unique(labels)} - set(index))
            if unknown:
                raise DataError(f"{where}{label_name} holds the label {unknown[0]!r}, which is "
                                + ("not among the classes given" if classes is not None else
                                   "no training sequence's label")
                                + f" ({', '.join(map(repr, names[:10]))}"
                                + (", …" if len(names) > 10 else "") + ")")
            mapped.append(np.vectorize(lambda y: index[_text(y)], otypes=[np.int32])(labels))
        y_train, y_test = mapped
        classes = len(names)
    if not given and len(np.unique(y_train)) == 1:
        only = repr(names[0]) if names else int(y_train[(0,) * y_train.ndim])
        raise DataError(f"{where}y_train holds one class ({only}): a classifier needs two or "
                        "more (a loss of 0 from the start, nothing learned)")
    if classes is None:
        classes = int(y_train.max()) + 1
        unseen = classes - len(np.unique(y_train))
        if unseen > classes // 2:  # most classes never seen: a stray label, not a class
            raise DataError(
                f"{where}y_train holds the label {int(y_train.max())}, so the classes would be "
                f"0..{classes - 1}, but {unseen:,} of those {classes:,} classes have no "
                "training sequence; labels must be 0..C-1 with most classes present (map "
                "them to that range first, or give them as strings: names of classes)")
    classes = int(classes)
    for label_name, labels in (("y_train", y_train), ("y_test", y_test)):
        if labels.max() >= classes:
            raise DataError(f"{where}{label_name} holds the label {labels.max()}, out of "
                            f"range for {classes} classes (0..{classes - 1}; by default the "
                            "classes are those of y_train)")
    return classes, names, y_train, y_test


def _text(label) -> str:
    """A class name as text (a bytes label of an ``.npz`` decoded)."""
    return label.decode() if isinstance(label, bytes) else str(label)


def array_task(train, test, *, name="arrays", classes=None, shuffle=True, where="") -> Task:
    """A [`Task`][attnrnn.train.task.Task] of your own sequences, with a test split.

    Args:
      train: ``(xs, labels)`` or ``(xs, labels, mask)``: ``xs (N, T, n)`` or ``(N, T)``
        (numbers, finite), ``labels (N,)`` or ``(N, T)`` (integers ``>= 0``, or strings:
        class names), ``mask (N, T)`` bool. Arrays of any kind numpy reads (numpy, jax,
        lists). ``xs`` may also be a list of ``N`` sequences ``(T_i, n)`` (or ``(T_i,)``) of
        different lengths: they are zero-padded to the longest and masked (no ``mask`` with
        it; per-step labels then a list of ``(T_i,)`` arrays). The time-series libraries'
        ``(n, T_i)`` layout is transposed first: ``[x.T for x in xs]``.
      test: the same for the test split (its own ``N`` and ``T``; the same ``n`` and kind of
        labels; a mask in both splits or in neither: a list of sequences of different
        lengths needs the other split to be a list too, or masked).
      name: how the run's records name the task.
      classes: the number of classes; default ``1 + `` the largest training label, refused
        when more than half of those classes have no training sequence (a stray label would
        otherwise build a model of that many outputs). Test labels must be below it. String
        labels are the classes in sorted order (``'10'`` before ``'2'``: strings sort as
        text), their names kept in ``task.class_names``; a list of names as ``classes``
        fixes that order (and names integer classes ``0..C-1``). A test label that is not
        a class is refused.
      shuffle: visit the training split in a fresh order every epoch (drawn from the run's
        key); False keeps the stored order (MNIST-1D's protocol).
      where: a prefix for error messages (``load_npz`` passes the file's name).

    Returns:
      a task whose ``sample(key, B)`` draws ``B`` training sequences at random (with
      replacement, for your own loops), whose ``train``/``test`` hold the splits as jax arrays
      (``(xs, labels)``, or ``(xs, labels, mask)`` where a mask was given or made; labels
      as int32 classes), and which [`fit`][attnrnn.train.loop.fit] trains in epochs and
      evaluates on ``test``.
    """
    for part, value in (("train", train), ("test", test)):
        if not isinstance(value, (tuple, list)) or len(value) not in (2, 3):
            raise DataError(f"{where}{part} must be (xs, labels) or (xs, labels, mask), got "
                            f"{type(value).__name__}"
                            + (f" of length {len(value)}" if isinstance(value, (tuple, list))
                               else ""))
    (*train, train_padded), (*test, test_padded) = (
        _padded(where, part, *split, *([None] * (3 - len(split))))
        for part, split in (("train", train), ("test", test)))
    train, test = _split(where, "train", *train), _split(where, "test", *test)
    # Lists of sequences of one length need no mask (the recurrences then run without one),
    # unless the other split has one.
    needed = [len(split) == 3 and not (padded and split[2].all())
              for split, padded in ((train, train_padded), (test, test_padded))]
    if not any(needed):
        train, test = train[:2], test[:2]
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
        if train_padded or test_padded:
            listed, array = ("x_train", "x_test") if train_padded else ("x_test", "x_train")
            raise DataError(f"{where}{listed} is a list of sequences of different lengths "
                            f"(padded and masked here) but {array} is an array without "
                            f"{other}: its padding, if any, would be read as steps; give "
                            f"{array} as a list of sequences too, or with {other}")
        raise DataError(f"{where}{masked[0]} is given but {other} is not: the split without a "
                        "mask would be read whole, its padding as steps; give both masks (all "
                        "True where a split has no padding) or neither")
    classes, names, y_train, y_test = _classes(where, classes, y_train, y_test)
    train, test = (x_train, y_train, *train[2:]), (x_test, y_test, *test[2:])
    splits = tuple(tuple(map(jnp.asarray, split)) for split in (train, test))

    def sample(key, batch_size):
        index = jax.random.randint(key, (batch_size,), 0, x_train.shape[0])
        return tuple(a[index] for a in splits[0])

    return Task(name, x_train.shape[-1], classes, y_train.ndim == 2, sample,
                train=splits[0], test=splits[1], shuffle=shuffle, class_names=names)


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
