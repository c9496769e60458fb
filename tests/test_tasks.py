import jax
import numpy as np
import pytest

from attnrnn import tasks


@pytest.mark.parametrize("level", list(tasks.LEVELS))
def test_temporal_order_facts(level):
    (l_lo, l_hi), (t1_lo, t1_hi), (t2_lo, t2_hi) = tasks.LEVELS[level]
    xs, labels, mask = jax.jit(lambda k: tasks.temporal_order(k, 256, level=level))(
        jax.random.PRNGKey(0))
    xs, labels, mask = map(np.asarray, (xs, labels, mask))
    assert xs.shape == (256, l_hi - 1, 8) and labels.shape == (256,) and mask.shape == (256, l_hi - 1)
    for x, label, m in zip(xs, labels, mask):
        length = int(m.sum())
        assert l_lo <= length < l_hi
        assert np.all(m[-length:]) and not np.any(m[:-length])  # pre-padding
        assert np.all(x[~m] == 0)  # zero vectors on the padding
        seq = x[m]
        assert np.all(seq.sum(1) == 1)  # one-hot
        sym = seq.argmax(1)
        assert sym[0] == 6 and sym[-1] == 7  # B first, E last
        relevant = np.flatnonzero(sym < 2)
        assert len(relevant) == 2
        t1, t2 = relevant
        assert t1_lo <= t1 < t1_hi and t2_lo <= t2 < t2_hi
        assert np.all((sym[1:-1] >= 2) | (sym[1:-1] < 2))
        assert set(np.delete(sym, [0, len(sym) - 1, t1, t2])) <= {2, 3, 4, 5}
        assert label == 2 * sym[t1] + sym[t2]  # Q=XX, R=XY, S=YX, U=YY


def test_classes_balanced_and_deterministic():
    _, labels, _ = tasks.temporal_order(jax.random.PRNGKey(1), 20000, level="hard")
    counts = np.bincount(np.asarray(labels), minlength=4) / 20000
    np.testing.assert_allclose(counts, 0.25, atol=0.015)
    a = tasks.temporal_order(jax.random.PRNGKey(3), 8, level="normal")
    b = tasks.temporal_order(jax.random.PRNGKey(3), 8, level="normal")
    c = tasks.temporal_order(jax.random.PRNGKey(4), 8, level="normal")
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
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


def test_make_task_and_bad_names():
    task = tasks.make_task("temporal-order", level="easy")
    assert (task.features, task.classes, task.per_step) == (8, 4, False)
    assert tasks.make_task("echo").per_step
    with pytest.raises(ValueError, match="task must be one of"):
        tasks.make_task("copy")
    with pytest.raises(ValueError, match="level must be one of"):
        tasks.temporal_order(jax.random.PRNGKey(0), 2, level="medium")
    with pytest.raises(ValueError, match="batch_size"):
        tasks.temporal_order(jax.random.PRNGKey(0), 0)
