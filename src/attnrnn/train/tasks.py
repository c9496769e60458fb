"""Sequence tasks as pure ``jax.random`` generators.

Each generator makes a whole batch inside ``jit`` from a key and returns
``(xs (B, T_max, features), labels, mask (B, T_max))``; ``labels`` is ``(B,)`` for
sequence classification (int) and regression (float), ``(B, T_max)`` for per-step tasks.
The same key always gives the same batch. Every range below includes both of its ends.
"""

from __future__ import annotations


import jax
import jax.numpy as jnp

from attnrnn._checks import as_int
from attnrnn.train.data import mnist1d
from attnrnn.train.task import Task

__all__ = [
    "LEVELS",
    "SYMBOLS",
    "CLASSES",
    "temporal_order",
    "echo",
    "delayed_letters",
    "adding",
    "make_task",
    "TASK_NAMES",
]

SYMBOLS = ("X", "Y", "a", "b", "c", "d", "B", "E")
CLASSES = ("Q", "R", "S", "U")  # XX, XY, YX, YY

# (length, t1, t2) ranges, each lo <= value <= hi: the 1997 paper's and the course's
# (Atcold/NYU-DLSP20 `TemporalOrderExp6aSequence`, which draws randint(lo, hi + 1)).
LEVELS = {
    "easy": ((7, 8), (1, 2), (4, 5)),
    "normal": ((30, 40), (2, 5), (20, 27)),
    "moderate": ((60, 80), (10, 20), (45, 54)),
    "hard": ((100, 110), (10, 20), (50, 60)),
    "nightmare": ((300, 500), (10, 80), (250, 290)),
}


def _check_level(level: str):
    if level not in LEVELS:
        raise ValueError(f"level must be one of {sorted(LEVELS)}, got {level!r}")
    return LEVELS[level]


def temporal_order(key, batch_size, *, level="moderate"):
    """Hochreiter & Schmidhuber (1997) experiment 6a, as the NYU deep-learning course makes it.

    A sequence of length ``L`` over the symbols ``X, Y, a, b, c, d, B, E`` (one-hot, in that
    order) starts with ``B`` and ends with ``E``; positions ``t1`` and ``t2`` (0-based, ``B`` at
    0) hold ``X`` or ``Y`` and every other position a random ``a``–``d``. The class is ``Q, R,
    S, U`` for ``XX, XY, YX, YY`` at ``(t1, t2)``, uniform. ``L``, ``t1`` and ``t2`` are uniform
    over the level's ranges, both ends included ([`LEVELS`][attnrnn.train.tasks.LEVELS]).
    Sequences are pre-padded with zero vectors to ``T_max``, the level's longest length.

    Args:
      key: a ``jax.random`` key.
      batch_size: ``B``.
      level: one of ``easy, normal, moderate, hard, nightmare``.

    Returns:
      ``xs (B, T_max, 8)`` float32, ``labels (B,)`` int32 in ``0..3``, ``mask (B, T_max)``
      bool (True on the sequence, False on padding).
    """
    batch_size = as_int("batch_size", batch_size, minimum=1)
    (l_lo, l_hi), (t1_lo, t1_hi), (t2_lo, t2_hi) = _check_level(level)
    t_max = l_hi
    k_len, k_t1, k_t2, k_cls, k_sym = jax.random.split(key, 5)
    shape = (batch_size, 1)
    length = jax.random.randint(k_len, shape, l_lo, l_hi + 1, dtype=jnp.int32)
    t1 = jax.random.randint(k_t1, shape, t1_lo, t1_hi + 1, dtype=jnp.int32)
    t2 = jax.random.randint(k_t2, shape, t2_lo, t2_hi + 1, dtype=jnp.int32)
    label = jax.random.randint(k_cls, (batch_size,), 0, len(CLASSES), dtype=jnp.int32)
    # Position within the sequence; negative on the pre-padding.
    j = jnp.arange(t_max)[None, :] - (t_max - length)
    symbol = jax.random.randint(k_sym, (batch_size, t_max), 2, 6, dtype=jnp.int32)  # a..d
    symbol = jnp.where(j == t1, (label // 2)[:, None], symbol)  # X = 0 or Y = 1
    symbol = jnp.where(j == t2, (label % 2)[:, None], symbol)
    symbol = jnp.where(j == 0, 6, jnp.where(j == length - 1, 7, symbol))
    mask = j >= 0
    xs = jax.nn.one_hot(symbol, len(SYMBOLS), dtype=jnp.float32) * mask[..., None]
    return xs, label.astype(jnp.int32), mask


def echo(key, batch_size, *, length=64, echo_step=3):
    """Echo: inputs are random bits; the label at ``t`` is the bit ``echo_step`` steps
    earlier (0 before the start).

    Returns:
      ``xs (B, length, 1)`` float32, ``labels (B, length)`` int32 in ``{0, 1}``,
      ``mask (B, length)`` all True.
    """
    batch_size = as_int("batch_size", batch_size, minimum=1)
    length = as_int("length", length, minimum=1)
    echo_step = as_int("echo_step", echo_step, minimum=0)
    bits = jax.random.bernoulli(key, 0.5, (batch_size, length)).astype(jnp.int32)
    labels = jnp.pad(bits, ((0, 0), (echo_step, 0)))[:, :length]
    return bits[..., None].astype(jnp.float32), labels, jnp.ones((batch_size, length), bool)


def delayed_letters(key, batch_size, *, length=32, delay=3):
    """Delayed letters: letters 1–26, one-hot in 27 features (feature 0 unused); the label
    at ``t`` is the letter ``delay`` steps earlier, or 0 ("none yet") before that.

    Args:
      delay: an int, or a ``(lo, hi)`` range (``lo <= delay < hi``) sampled per sequence —
        the variable-delay variant, where the model sees no cue of the delay and the best
        achievable accuracy is limited accordingly.

    Returns:
      ``xs (B, length, 27)`` float32, ``labels (B, length)`` int32 in ``0..26``,
      ``mask (B, length)`` all True.
    """
    batch_size = as_int("batch_size", batch_size, minimum=1)
    length = as_int("length", length, minimum=1)
    k_letters, k_delay = jax.random.split(key)
    if isinstance(delay, tuple):
        lo = as_int("delay[0]", delay[0], minimum=0)
        hi = as_int("delay[1]", delay[1], minimum=lo + 1)
        delays = jax.random.randint(k_delay, (batch_size, 1), lo, hi, dtype=jnp.int32)
    else:
        delays = jnp.full((batch_size, 1), as_int("delay", delay, minimum=0))
    letters = jax.random.randint(k_letters, (batch_size, length), 1, 27, dtype=jnp.int32)
    source = jnp.arange(length)[None, :] - delays
    labels = jnp.where(
        source >= 0, jnp.take_along_axis(letters, jnp.maximum(source, 0), axis=1), 0
    )
    xs = jax.nn.one_hot(letters, 27, dtype=jnp.float32)
    return xs, labels.astype(jnp.int32), jnp.ones((batch_size, length), bool)


def adding(key, batch_size, *, length=100):
    """The adding problem, Hochreiter & Schmidhuber (1997) §5.4, with minimal length ``T``.

    Each step is a pair ``(value, marker)``: ``value`` uniform in ``[-1, 1]``, ``marker`` in
    ``{1, 0, -1}``. The length ``L`` is uniform in ``[T, T + T//10]``. Exactly two pairs are
    marked 1: one of the first ten (its value is ``X1``), then one of the first ``T/2 - 1``
    still unmarked ones (``X2``; positions ``0 .. T//2 - 2``). Every other marker is 0,
    except the first and the last pair's, which are -1 (a marked first pair keeps 1). "In the
    rare case where the first pair of the sequence gets marked, we set X1 to zero": here the
    first pair's value is set to 0 when it is marked (whichever of the two draws marked it),
    so the target is always ``0.5 + (X1 + X2) / 4`` of the values the model sees. Sequences
    are pre-padded with zero pairs to ``T + T//10``.

    Returns:
      ``xs (B, T_max, 2)`` float32, ``labels (B,)`` float32 targets in ``[0, 1]``,
      ``mask (B, T_max)`` bool.
    """
    batch_size = as_int("batch_size", batch_size, minimum=1)
    T = as_int("length", length, minimum=22)  # so the first ten positions lie in the first T/2 - 1
    t_max = T + T // 10
    k_len, k_first, k_second, k_values = jax.random.split(key, 4)
    shape = (batch_size, 1)
    L = jax.random.randint(k_len, shape, T, t_max + 1, dtype=jnp.int32)
    first = jax.random.randint(k_first, shape, 0, 10, dtype=jnp.int32)
    # The second mark: uniform over the T//2 - 1 first positions other than `first`.
    second = jax.random.randint(k_second, shape, 0, T // 2 - 2, dtype=jnp.int32)
    second = second + (second >= first)
    j = jnp.arange(t_max)[None, :] - (t_max - L)  # position in the sequence, < 0 on padding
    marked = (j == first) | (j == second)
    marker = jnp.where(marked, 1.0, jnp.where((j == 0) | (j == L - 1), -1.0, 0.0))
    value = jax.random.uniform(k_values, (batch_size, t_max), minval=-1.0, maxval=1.0)
    value = jnp.where(marked & (j == 0), 0.0, value)
    mask = j >= 0
    xs = jnp.stack([value, marker], axis=-1) * mask[..., None]
    target = 0.5 + jnp.sum(jnp.where(marked, value, 0.0), axis=1) / 4
    return xs.astype(jnp.float32), target.astype(jnp.float32), mask


TASK_NAMES = ("temporal-order", "adding", "echo", "delayed-letters", "mnist1d",
              "mnist1d,shuffle")


def make_task(name: str, *, level="moderate", length=None, echo_step=3, delay=3) -> Task:
    """A [`Task`][attnrnn.train.task.Task] by name: ``temporal-order`` (``level``), ``adding``
    (``length`` T, default 100), ``echo`` (``length``, ``echo_step``), ``delayed-letters``
    (``length``, ``delay``), or MNIST-1D as ``mnist1d`` / ``mnist1d,shuffle`` (arrays, with
    a test split; [`attnrnn.train.data.mnist1d`][attnrnn.train.data.mnist1d])."""
    if name in ("mnist1d", "mnist1d,shuffle"):

        return mnist1d(shuffle_time=name.endswith(",shuffle"))
    if name == "temporal-order":
        _check_level(level)
        task = Task(name, len(SYMBOLS), len(CLASSES), False,
                    lambda key, b: temporal_order(key, b, level=level))
    elif name == "adding":
        length = as_int("length", 100 if length is None else length, minimum=22)
        task = Task(name, 2, 1, False, lambda key, b: adding(key, b, length=length),
                    regression=True)
    elif name == "echo":
        length = 64 if length is None else length
        task = Task(name, 1, 2, True,
                    lambda key, b: echo(key, b, length=length, echo_step=echo_step))
    elif name == "delayed-letters":
        length = 32 if length is None else length
        task = Task(name, 27, 27, True,
                    lambda key, b: delayed_letters(key, b, length=length, delay=delay))
    else:
        raise ValueError(f"task must be one of {list(TASK_NAMES)}, got {name!r}")
    # The generator checks its sizes when it runs: run it now (shapes only, nothing computed)
    # so a bad size is refused here, before a run folder is made.
    jax.eval_shape(lambda: task.sample(jax.random.PRNGKey(0), 1))
    return task
