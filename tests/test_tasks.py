import jax
import numpy as np
import pytest

from attnrnn.train import tasks
from helpers import assert_tree_equal


# The course's presets (Atcold/NYU-DLSP20 res/sequential_tasks.py), written out here from its
# definition, not read from the library: (length, t1, t2), both ends drawn (randint(lo, hi + 1)).
COURSE = {
    "easy": ((7, 8), (1, 2), (4, 5)),
    "normal": ((30, 40), (2, 5), (20, 27)),
    "moderate": ((60, 80), (10, 20), (45, 54)),
    "hard": ((100, 110), (10, 20), (50, 60)),
    "nightmare": ((300, 500), (10, 80), (250, 290)),
}


@pytest.mark.parametrize("level", list(COURSE))
def test_temporal_order_matches_the_course(level):
    """Every sequence as the course's generator makes it, and every value of each range,
    top values included, is drawn."""
    (l_lo, l_hi), (t1_lo, t1_hi), (t2_lo, t2_hi) = COURSE[level]
    xs, labels, mask = jax.jit(lambda k: tasks.temporal_order(k, 4096, level=level))(
        jax.random.PRNGKey(0))
    xs, labels, mask = map(np.asarray, (xs, labels, mask))
    assert xs.shape == (4096, l_hi, 8) and labels.shape == (4096,) and mask.shape == (4096, l_hi)
    lengths, firsts, seconds = [], [], []
    for x, label, m in zip(xs[:512], labels[:512], mask[:512]):
        length = int(m.sum())
        assert np.all(m[-length:]) and not np.any(m[:-length])  # pre-padding
        assert np.all(x[~m] == 0)  # zero vectors on the padding
        seq = x[m]
        assert np.all(seq.sum(1) == 1)  # one-hot
        sym = seq.argmax(1)
        assert sym[0] == 6 and sym[-1] == 7  # B first, E last
        t1, t2 = np.flatnonzero(sym < 2)
        assert set(np.delete(sym, [0, len(sym) - 1, t1, t2])) <= {2, 3, 4, 5}
        assert label == 2 * sym[t1] + sym[t2]  # Q=XX, R=XY, S=YX, U=YY
    for x, m in zip(xs, mask):
        sym = x[m].argmax(1)
        lengths.append(int(m.sum()))
        t1, t2 = np.flatnonzero(sym < 2)
        firsts.append(t1)
        seconds.append(t2)
    for values, (lo, hi) in zip((lengths, firsts, seconds), COURSE[level]):
        assert set(values) == set(range(lo, hi + 1)), (level, lo, hi)


def test_classes_balanced_and_deterministic():
    _, labels, _ = tasks.temporal_order(jax.random.PRNGKey(1), 20000, level="hard")
    counts = np.bincount(np.asarray(labels), minlength=4) / 20000
    np.testing.assert_allclose(counts, 0.25, atol=0.015)
    a = tasks.temporal_order(jax.random.PRNGKey(3), 8, level="normal")
    b = tasks.temporal_order(jax.random.PRNGKey(3), 8, level="normal")
    c = tasks.temporal_order(jax.random.PRNGKey(4), 8, level="normal")
    assert_tree_equal(a, b)
    assert not np.array_equal(a[0], c[0])


def test_echo():
    xs, labels, mask = tasks.echo(jax.random.PRNGKey(0), 16, length=20, echo_step=3)
    assert xs.shape == (16, 20, 1) and labels.shape == (16, 20) and bool(mask.all())
    np.testing.assert_array_equal(labels[:, 3:], xs[:, :-3, 0])
    np.testing.assert_array_equal(labels[:, :3], 0)


@pytest.mark.parametrize("delay", [4, (1, 5)])
def test_delayed_letters(delay):
    xs, labels, mask = tasks.delayed_letters(jax.random.PRNGKey(0), 64, length=12, delay=delay)
    assert xs.shape == (64, 12, 27) and bool(mask.all())
    letters = np.asarray(xs.argmax(-1))
    assert letters.min() >= 1 and letters.max() <= 26 and np.all(xs[..., 0] == 0)
    for seq, lab in zip(letters, np.asarray(labels)):
        d = int(np.argmax(lab > 0))  # the first labelled step is the delay
        assert (d == 4) if delay == 4 else (1 <= d < 5)
        np.testing.assert_array_equal(lab[d:], seq[: 12 - d])
        assert np.all(lab[:d] == 0)


def adding_reference(rng, T):
    """One sequence of the adding problem, written from the paper's text (§5.4) in NumPy."""
    L = rng.integers(T, T + T // 10 + 1)
    values = rng.uniform(-1, 1, L)
    markers = np.zeros(L)
    markers[0] = markers[-1] = -1
    first = rng.integers(0, 10)
    second = rng.choice([i for i in range(T // 2 - 1) if i != first])
    markers[[first, second]] = 1
    if markers[0] == 1:
        values[0] = 0.0  # "we set X1 to zero"
    return np.stack([values, markers], 1), 0.5 + (values[first] + values[second]) / 4


@pytest.mark.parametrize("T", [100, 1000])
def test_adding_problem_matches_the_paper(T):
    xs, targets, mask = map(np.asarray, jax.jit(lambda k: tasks.adding(k, 2000, length=T))(
        jax.random.PRNGKey(T)))
    t_max = T + T // 10
    assert xs.shape == (2000, t_max, 2) and targets.shape == (2000,)
    assert xs.dtype == np.float32 and targets.dtype == np.float32
    firsts, seconds, lengths = [], [], []
    for x, target, m in zip(xs, targets, mask):
        length = int(m.sum())
        lengths.append(length)
        assert np.all(m[-length:]) and np.all(x[~m] == 0)
        values, markers = x[m].T
        marked = np.flatnonzero(markers == 1)
        assert len(marked) == 2 and marked[0] < 10 and marked[1] <= T // 2 - 2
        assert markers[-1] == -1 and (markers[0] == -1 or 0 in marked)
        assert set(np.delete(markers, [0, length - 1, *marked])) <= {0.0}
        assert np.all(np.abs(values) <= 1)
        np.testing.assert_allclose(target, 0.5 + values[marked].sum() / 4, atol=1e-6)
        seconds.append(marked[1])
        firsts.append(marked[0])
    assert set(lengths) == set(range(T, t_max + 1)) if T == 100 else min(lengths) >= T
    assert set(firsts) == set(range(10))
    # Statistics against the paper's definition, sampled by the NumPy reference.
    rng = np.random.default_rng(0)
    ref = [adding_reference(rng, T) for _ in range(2000)]
    ref_targets = np.array([t for _, t in ref])
    assert abs(targets.mean() - ref_targets.mean()) < 0.02
    assert abs(targets.std() - ref_targets.std()) < 0.02
    ref_second = [np.flatnonzero(x[:, 1] == 1).max() for x, _ in ref]
    assert abs(np.mean(seconds) - np.mean(ref_second)) < 0.05 * T


def test_make_task_and_bad_names():
    task = tasks.make_task("temporal-order", level="easy")
    assert (task.features, task.classes, task.per_step) == (8, 4, False)
    assert tasks.make_task("echo").per_step
    adding = tasks.make_task("adding", length=200)
    assert (adding.features, adding.classes, adding.regression) == (2, 1, True)
    assert adding.sample(jax.random.PRNGKey(0), 3)[0].shape == (3, 220, 2)
    with pytest.raises(ValueError, match="length"):
        tasks.make_task("adding", length=10)
    with pytest.raises(ValueError, match="task must be one of"):
        tasks.make_task("copy")
    with pytest.raises(ValueError, match="level must be one of"):
        tasks.temporal_order(jax.random.PRNGKey(0), 2, level="medium")
    with pytest.raises(ValueError, match="batch_size"):
        tasks.temporal_order(jax.random.PRNGKey(0), 0)
