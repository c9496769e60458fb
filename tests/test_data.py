"""Tasks made from arrays: your own sequences, .npz files and MNIST-1D; the train/test protocol."""

import json
import re
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attnrnn import train as training
from attnrnn.train import cli, data, run, tasks
from attnrnn.train.checkpoints import load_params
from helpers import assert_tree_allclose, assert_tree_equal


def toy_arrays(n, length=12, features=3, seed=0, per_step=False):
    """A learnable toy: the class is which third of the features holds the largest first-step
    value (per step: the sign of each step's first feature)."""
    rng = np.random.default_rng(seed)
    xs = rng.standard_normal((n, length, features)).astype(np.float32)
    labels = ((xs[..., 0] > 0).astype(np.int64) if per_step
              else np.argmax(xs[:, 0, :], axis=-1).astype(np.int64))
    return xs, labels


def test_array_task_checks_and_converts():
    xs, labels = toy_arrays(20)
    task = data.array_task((xs, labels), toy_arrays(7, length=9, seed=1), name="toy")
    # printed, a task shows its splits by shape (it printed every array)
    assert repr(task) == ("Task(name='toy', features=3, classes=3, per_step=False, "
                          "regression=False, train=(float32[20, 12, 3], int32[20]), "
                          "test=(float32[7, 9, 3], int32[7]), shuffle=True)")
    assert (task.name, task.features, task.classes, task.per_step) == ("toy", 3, 3, False)
    assert task.train[0].dtype == jnp.float32 and task.train[1].dtype == jnp.int32
    assert len(task.train) == 2  # no mask given: none stored, every step counts
    assert task.test[0].shape == (7, 9, 3)
    # (N, T) sequences have one feature per step; per-step labels make a per-step task.
    flat = data.array_task((xs[..., 0], labels), (xs[:4, :, 0], labels[:4]))
    assert flat.features == 1 and flat.train[0].shape == (20, 12, 1)
    steps = data.array_task(toy_arrays(5, per_step=True), toy_arrays(3, per_step=True))
    assert steps.per_step and steps.classes == 2
    batch = task.sample(jax.random.PRNGKey(0), 6)
    assert [a.shape for a in batch] == [(6, 12, 3), (6,)]


def test_a_list_of_sequences_is_padded_and_masked():
    """Sequences of different lengths (the time-series libraries' form) give the task the
    padded arrays and the mask a user would have built; of one length, no mask."""
    rng = np.random.default_rng(0)
    lengths = [5, 3, 7, 1]
    xs = [rng.standard_normal((t, 2)) for t in lengths]
    task = data.array_task((xs, [0, 1, 1, 0]), (xs[:2], [1, 0]))
    padded = np.zeros((4, 7, 2), np.float32)
    mask = np.zeros((4, 7), bool)
    for i, x in enumerate(xs):
        padded[i, :len(x)], mask[i, :len(x)] = x, True
    by_hand = data.array_task((padded, [0, 1, 1, 0], mask), (padded[:2, :5], [1, 0], mask[:2, :5]))
    assert_tree_equal(task.train, by_hand.train)
    assert_tree_equal(task.test, by_hand.test)
    # (T_i,) sequences have one feature; one length needs no mask (unless the other split has)
    same = data.array_task(([x[:, 0] for x in xs[:3]], [0, 1, 0]), ([xs[0][:, 0]], [1]))
    assert same.train[0].shape == (3, 7, 1) and len(same.train) == 3 and len(same.test) == 3
    even = data.array_task(([x[:3] for x in xs[:3]], [0, 1, 0]), ([x[:2] for x in xs[:2]], [1, 0]))
    assert len(even.train) == len(even.test) == 2
    # per-step labels as a list, padded alike
    steps = data.array_task((xs, [np.arange(t) % 2 for t in lengths]), (xs[:1], [np.ones(5, int)]))
    assert steps.per_step and steps.train[1].shape == (4, 7) and len(steps.train) == 3
    np.testing.assert_array_equal(np.asarray(steps.train[1])[2], np.arange(7) % 2)
    # what cannot be read as one set of sequences is refused, naming the array
    refusals = {
        "x_train is a list of sequences of different lengths (padded and masked here) but "
        "x_test is an array without mask_test": ((xs, [0, 1, 1, 0]), (padded, [0, 1, 1, 0])),
        "mask_train is given with x_train as a list": ((xs, [0, 1, 1, 0], mask), (xs, [0] * 4)),
        "x_train[1] has shape (3, 3); each sequence must be (T_i, 2)":
            (([xs[0], np.zeros((3, 3))], [0, 1]), (xs, [0, 1, 1, 0])),
        "y_train is a list of per-step labels; it needs one (T_i,) array per sequence":
            ((xs, [np.zeros(t, int) for t in [5, 3, 7, 2]]), (xs, [np.zeros(t, int)
                                                                 for t in lengths])),
    }
    for words, (train, test) in refusals.items():
        with pytest.raises(data.DataError, match=re.escape(words)):
            data.array_task(train, test)


def test_string_labels_are_classes_in_sorted_order_with_their_names(tmp_path, capsys):
    xs, labels = toy_arrays(256)
    names = np.array(["low", "mid", "high"])  # sorted: high, low, mid
    task = data.array_task((xs, names[labels]), (xs[:9], list(names[labels[:9]])))
    assert task.class_names == ("high", "low", "mid") and task.classes == 3
    assert "class_names=('high', 'low', 'mid')" in repr(task)
    np.testing.assert_array_equal(task.train[1], np.array([1, 2, 0])[labels])
    assert task.train[1].dtype == jnp.int32
    # a list of names fixes the order (and names integer classes)
    ordered = data.array_task((xs, names[labels]), (xs[:9], names[labels[:9]]),
                              classes=["low", "mid", "high", "none"])
    assert ordered.classes == 4
    np.testing.assert_array_equal(ordered.train[1], labels)
    assert data.array_task((xs, labels), (xs, labels), classes=names).class_names == \
        ("low", "mid", "high")
    refusals = {
        "y_test holds the label 'top', which is no training sequence's label ('high', 'low', "
        "'mid')": ((xs, names[labels]), (xs[:2], ["top", "low"]), None),
        "y_test holds the label 'top', which is not among the classes given":
            ((xs, names[labels]), (xs[:2], ["top", "low"]), list(names)),
        "y_train holds strings and y_test integers": ((xs, names[labels]), (xs, labels), None),
        "y_train holds one class ('low')": ((xs, ["low"] * 256), (xs[:1], ["low"]), None),
        "classes must be an int or a list of two or more distinct class names":
            ((xs, labels), (xs, labels), ["a", "a"]),
    }
    for words, (train, test, classes) in refusals.items():
        with pytest.raises(data.DataError, match=re.escape(words)):
            data.array_task(train, test, classes=classes)
    # An .npz holds them as a unicode array, read without pickle; the run keeps the names.
    source = save_npz(tmp_path / "named.npz", y_train=names[labels],
                      y_test=names[toy_arrays(64, seed=1)[1]])
    out = tmp_path / "run"
    assert cli.main(["train", "--data", str(source), *FLAGS, "--out", str(out)]) == 0
    assert "confusion.png" in capsys.readouterr().out and (out / "confusion.png").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["class_names"] == ["high", "low", "mid"]
    confusion = np.array(summary["test_confusion"])
    assert confusion.shape == (3, 3) and confusion.sum() == 64
    assert np.trace(confusion) == 64 - summary["test_errors"]


@pytest.mark.parametrize("shuffle", [True, False])
def test_epochs_visit_every_sequence_once(shuffle):
    n, batch = 10, 4  # batches straddle epochs
    xs = np.arange(n, dtype=np.float32)[:, None, None] * np.ones((1, 2, 1), np.float32)
    labels = np.arange(n) % 2
    task = data.array_task((xs, labels), (xs, labels), shuffle=shuffle)
    key = jax.random.PRNGKey(3)
    seen = np.concatenate([np.asarray(training.next_batch(task, key, step, batch)[1][0][:, 0, 0])
                           for step in range(5)]).astype(int)  # 20 sequences: two epochs
    for epoch in (seen[:n], seen[n:]):
        assert sorted(epoch) == list(range(n))
    if shuffle:
        assert list(seen[:n]) != list(range(n)) and list(seen[:n]) != list(seen[n:])
        other = training.next_batch(task, jax.random.PRNGKey(4), 0, batch)[1][0][:, 0, 0]
        assert list(np.asarray(other)) != list(seen[:batch])  # the order comes from the key
    else:
        assert list(seen) == list(range(n)) * 2
    again = training.next_batch(task, key, 3, batch)  # a function of (key, step) alone
    np.testing.assert_array_equal(again[1][0][:, 0, 0], seen[12:16])
    assert again[0] is key
    with pytest.raises(ValueError, match="batch of 11 sequences is more than the 10"):
        training.next_batch(task, key, 0, 11)


def test_fit_on_arrays_evaluates_its_test_split():
    task = data.array_task(toy_arrays(512), toy_arrays(200, seed=1), name="toy")
    config = training.TrainConfig(hidden=16, steps=120, batch=32, eval_every=40)
    state, history, summary = training.fit(config, task=task, progress=False)
    assert summary["protocol"] == "test" and summary["config"]["task"] == "toy"
    assert summary["test_size"] == 200 and summary["num_params"] > 0
    assert "heldout_accuracy" not in summary
    again = training.evaluate(state.params, task.test, model=config.build_model(task))
    assert summary["test_accuracy"] == float(again["accuracy"]) > 0.8
    assert summary["test_loss"] == float(again["loss"])
    # counts are ints: in evaluate's result, the records and summary.json
    assert jnp.issubdtype(again["errors"].dtype, jnp.integer)
    assert type(summary["test_errors"]) is int and summary["test_errors"] == int(again["errors"])
    assert all(type(r["test_errors"]) is int for r in history if "test_errors" in r)
    evaluated = [r["step"] for r in history if "test_accuracy" in r]
    assert evaluated == [0, 40, 80, 120]
    assert abs(summary["initial_loss"] - np.log(3)) < 0.05
    with pytest.raises(ValueError, match="protocol heldout draws its held-out set"):
        training.fit(config.replace(protocol="heldout"), task=task, progress=False)
    with pytest.raises(ValueError, match="a test split must not choose when to stop"):
        training.fit(config, task=task, progress=False, stop_when_solved=True)
    # a config naming another task beside task= is refused (it trained on task= silently)
    with pytest.raises(ValueError, match="fit got task='toy' and a config with "
                                         "task='adding': name the task once"):
        training.fit(config.replace(task="adding"), task=task, progress=False)


def test_evaluation_in_batches_equals_one_batch():
    task = tasks.make_task("echo", length=16)
    model = training.model_for("gated", task, 8)
    params = model.init(jax.random.PRNGKey(0))
    xs, labels, mask = task.sample(jax.random.PRNGKey(1), 23)
    mask = mask.at[:, :3].set(False)  # some steps do not count
    whole = training.evaluate(params, (xs, labels, mask), model=model)
    parts = training.evaluate(params, (xs, labels, mask), model=model, batch_size=5)
    assert int(whole["errors"]) == int(parts["errors"])
    np.testing.assert_allclose(float(parts["loss"]), float(whole["loss"]), rtol=1e-6)
    np.testing.assert_allclose(float(parts["accuracy"]), float(whole["accuracy"]), rtol=1e-6)


def test_per_step_accuracy_is_over_valid_steps():
    """Echo at initialisation: the accuracy is the fraction of valid steps right, in [0, 1]
    (errors were once divided by the number of sequences: -10.8)."""
    task = tasks.make_task("echo", length=64)
    model = training.model_for("gated", task, 8)
    params = model.init(jax.random.PRNGKey(0))
    xs, labels, mask = training.heldout_set(task, 256)
    result = training.evaluate(params, (xs, labels, mask), model=model)
    outputs = jax.vmap(lambda x, m: model.apply(params, x, m))(xs, mask)
    wrong = np.asarray(jnp.argmax(outputs, -1) != labels)
    assert 0 <= float(result["accuracy"]) <= 1
    np.testing.assert_allclose(float(result["accuracy"]), 1 - wrong.mean(), rtol=1e-6)


def test_train_step_takes_batches_without_a_mask():
    task = data.array_task(toy_arrays(64), toy_arrays(8, seed=1))
    model = training.model_for("gated", task, 8)
    optimizer = training.make_optimizer("adam", 1e-2, 1.0)
    state = training.init_train_state(jax.random.PRNGKey(0), model.init(jax.random.PRNGKey(1)),
                                      optimizer)
    step = training.make_train_step(optimizer, model)
    xs, labels = task.train[0][:16], task.train[1][:16]
    without, metrics = step(state, (xs, labels))
    with_mask, _ = step(state, (xs, labels, jnp.ones(xs.shape[:2], bool)))
    assert_tree_allclose(without.params, with_mask.params, rtol=1e-6, atol=1e-7)
    assert np.isfinite(float(metrics["loss"]))


def save_npz(path, **arrays):
    xs, labels = toy_arrays(256)
    test_xs, test_labels = toy_arrays(64, seed=1)
    arrays = {"x_train": xs, "y_train": labels, "x_test": test_xs, "y_test": test_labels,
              **arrays}
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


FLAGS = ["--hidden", "8", "--steps", "40", "--eval-every", "10", "--no-progress"]


def test_data_file_from_the_command_line(tmp_path, capsys):
    mask = np.ones((256, 12), bool)
    mask[:, :2] = False
    source = save_npz(tmp_path / "mine.npz", mask_train=mask, mask_test=mask[:64])
    out = tmp_path / "run"
    assert cli.main(["train", "--data", str(source), *FLAGS, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "gated on mine.npz: test accuracy" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert {"test_accuracy", "test_loss", "num_params", "test_size"} <= summary.keys()
    assert summary["protocol"] == "test" and summary["test_size"] == 64
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["task"] == "mine.npz" and config["data"] == str(source)
    assert config["data_sha256"] == data.file_sha256(source)
    assert (out / "curves.png").exists()
    # The saved parameters give the recorded test accuracy.
    config = training.TrainConfig(**config)
    task, model = config.make_task(), config.build_model()
    params = load_params(out / "params", model.init(jax.random.PRNGKey(0)))
    assert float(training.evaluate(params, task.test, model=model)["accuracy"]) == \
        summary["test_accuracy"]
    # --data and --task together name two tasks.
    assert cli.main(["train", "--data", str(source), "--task", "adding", *FLAGS, "--out",
                     str(tmp_path / "never")]) == 2
    assert "--data and --task name two tasks" in capsys.readouterr().err


def _bad(tmp_path, kind):
    """A file with one problem, and the words its error must hold."""
    path = tmp_path / "bad.npz"
    xs, labels = toy_arrays(32)
    if kind == "missing key":
        np.savez(path, x_train=xs, y_train=labels, x_test=xs)
        return path, "missing y_test"
    if kind == "unexpected key":
        return save_npz(path, mask_trian=np.ones((256, 12), bool)), "unexpected mask_trian"
    if kind == "rank":
        return save_npz(path, x_train=xs[..., None]), "x_train must be (N, T, features)"
    if kind == "float labels":
        return save_npz(path, y_train=np.zeros(256)), "y_train must hold integer class labels"
    if kind == "string dtype":
        return save_npz(path, x_test=np.array([["a"]])), "x_test must be a numeric array"
    if kind == "object array":
        return (save_npz(path, x_train=np.array([xs[0], xs[1, :3]], dtype=object)),
                "x_train is an object array")
    if kind == "nan":
        bad = toy_arrays(256)[0]
        bad[3, 4, 1] = np.nan
        return save_npz(path, x_train=bad), "x_train must hold finite real numbers; it holds NaN"
    if kind == "inf":
        bad = toy_arrays(64, seed=1)[0]
        bad[0, 0, 0] = np.inf
        return save_npz(path, x_test=bad), "x_test must hold finite real numbers"
    if kind == "negative label":
        return save_npz(path, y_train=-np.ones(256, int)), "y_train holds the label -1"
    if kind == "label out of range":
        return save_npz(path, y_test=np.full(64, 7)), "y_test holds the label 7, out of range"
    if kind == "label shape":
        return save_npz(path, y_train=np.zeros(255, int)), "y_train must have shape (256,)"
    if kind == "feature mismatch":
        return (save_npz(path, x_test=np.zeros((64, 12, 4), np.float32)),
                "x_train has 3 features per step but x_test 4")
    if kind == "mask":
        return save_npz(path, mask_test=np.ones((64, 12))), "mask_test must be a boolean array"
    if kind == "mask in one split":  # was trained on, the test padding read as steps
        return (save_npz(path, mask_train=np.ones((256, 12), bool)),
                "mask_train is given but mask_test is not")
    if kind == "empty sequence":  # was classified from the initial state alone
        mask = np.ones((64, 12), bool)
        mask[5] = False
        return (save_npz(path, mask_train=np.ones((256, 12), bool), mask_test=mask),
                "mask_test marks no step of sequence 5")
    if kind == "one class":  # was trained (a loss of 0) and plotted with a UserWarning
        return save_npz(path, y_train=np.zeros(256, int), y_test=np.zeros(64, int)), \
            "y_train holds one class (0): a classifier needs two or more"
    if kind == "stray label":  # was a model with a million outputs
        labels = toy_arrays(256)[1]
        labels[7] = 1_000_000
        return save_npz(path, y_train=labels), "y_train holds the label 1000000"
    if kind == "not an npz":  # was "pickled (object) data", the message cut mid-word
        path.write_text("x,y\n1,2\n")
        return path, "is not an .npz archive: not a zip file (numpy.savez writes one)"
    if kind == "npy":
        np.save(tmp_path / "bad.npy", xs)
        return tmp_path / "bad.npy", "is a single .npy array, not an .npz archive"
    if kind == "no file":
        return tmp_path / "absent.npz", "cannot read --data"
    raise AssertionError(kind)


BAD_KINDS = ["missing key", "unexpected key", "rank", "float labels", "string dtype",
             "object array", "nan", "inf", "negative label", "label out of range",
             "label shape", "feature mismatch", "mask", "mask in one split", "stray label",
             "empty sequence", "one class",
             "not an npz", "npy", "no file"]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_data_files_are_one_line_errors(tmp_path, capsys, kind, monkeypatch):
    path, words = _bad(tmp_path, kind)

    def no_pickle(*args, **kwargs):
        raise AssertionError("a data file was unpickled")

    monkeypatch.setattr("pickle.loads", no_pickle)
    monkeypatch.setattr("pickle.load", no_pickle)
    out = tmp_path / "never"
    assert cli.main(["train", "--data", str(path), *FLAGS, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and str(path.name) in err, err
    assert len(err.splitlines()) == 1 and err.startswith("attnrnn train: error: ")
    assert not out.exists()


def _train(*argv):
    return subprocess.Popen([sys.executable, "-m", "attnrnn", "train", *map(str, argv)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_data_run_killed_and_resumed_is_bitwise(tmp_path):
    source = save_npz(tmp_path / "mine.npz")
    flags = ["--data", source, "--hidden", "8", "--steps", "400", "--eval-every", "10",
             "--checkpoint-every", "20", "--no-progress"]
    reference = tmp_path / "reference"
    assert _train(*flags, "--out", reference).wait() == 0
    killed = tmp_path / "killed"
    proc = _train(*flags, "--out", killed)
    deadline = time.monotonic() + 120
    while not any((killed / "checkpoints").glob("[0-9]*")) and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "summary.json").exists(), "the run ended before it was killed"
    resumed = _train("--resume", killed, "--no-progress")
    assert resumed.wait() == 0, resumed.stderr.read()
    assert run.read_metrics(killed) == run.read_metrics(reference)
    like = training.TrainConfig(data=str(source), hidden=8).build_model().init(
        jax.random.PRNGKey(0))
    assert_tree_equal(load_params(killed / "params", like), load_params(reference / "params",
                                                                          like))
    # A resume whose data file changed is refused, naming the file and the hashes.
    save_npz(source, y_test=np.zeros(64, int))
    changed = _train("--resume", killed, "--no-progress")
    assert changed.wait() == 2
    err = changed.stderr.read()
    assert "is not the file the run was made with" in err and len(err.strip().splitlines()) == 1


def test_a_task_given_in_python_is_recorded_and_needed_to_resume(tmp_path):
    task = data.array_task(toy_arrays(64), toy_arrays(16, seed=1), name="toy")
    config = training.TrainConfig(hidden=4, steps=20, eval_every=10)
    out = tmp_path / "run"
    summary = run.start_run(config, out, task=task, progress=False)
    assert summary["config"]["task"] == "toy"
    saved = json.loads((out / "config.json").read_text())
    assert saved["config"]["task"] == "toy" and saved["given_task"] == "toy"
    with pytest.raises(run.RunError, match=r"task given in Python \('toy'\)"):
        run.resume_run(out, progress=False)
    assert run.resume_run(out, task=task, progress=False)["steps"] == 20


def test_mnist1d_is_generated_offline():
    state = np.random.get_state()[1].copy()
    plain = data.mnist1d.__wrapped__()
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # the global RNG is kept
    assert plain.name == "mnist1d" and plain.classes == 10 and not plain.shuffle
    assert plain.train[0].shape == (4000, 40, 1) and plain.test[0].shape == (1000, 40, 1)
    assert sorted(np.unique(np.asarray(plain.train[1]))) == list(range(10))
    shuffled = tasks.make_task("mnist1d,shuffle")
    assert shuffled.name == "mnist1d,shuffle"
    a, b = np.asarray(plain.train[0][..., 0]), np.asarray(shuffled.train[0][..., 0])
    assert not np.allclose(a, b)  # the same sequences, their 40 steps in one fixed order
    np.testing.assert_allclose(np.sort(a, axis=1), np.sort(b, axis=1), rtol=1e-6)
    np.testing.assert_array_equal(plain.train[1], shuffled.train[1])


def test_mnist1d_from_the_command_line(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", "--task", "mnist1d", "--hidden", "8", "--steps", "100",
                     "--no-progress", "--out", str(out)]) == 0
    assert "gated on mnist1d: test accuracy" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    config = summary["config"]
    # The benchmark's own protocol: adam 1e-2, batches of 100 in order, no clipping.
    assert (config["batch"], config["lr"], config["clip"], config["optimizer"]) == \
        (100, 0.01, "none", "adam")
    assert summary["test_size"] == 1000 and 0 <= summary["test_accuracy"] <= 1
    assert cli.main(["train", "--task", "mnist1d", "--length", "5", "--out",
                     str(tmp_path / "never")]) == 2
    assert "--length is for the adding" in capsys.readouterr().err


def test_mnist1d_without_its_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mnist1d.data", None)
    with pytest.raises(data.DataError, match=r"pip install 'attnrnn\[data\]'"):
        data.mnist1d.__wrapped__()


def test_mnist1d_defaults_fit_the_benchmarks_size():
    """Every model's MNIST-1D default stays within ConvBase's 5,210 weights."""
    for model in ("conv", "gated", "gru", "lstm", "attention:2", "attention:inf"):
        config = training.TrainConfig(task="mnist1d", model=model)
        params = config.build_model().init(jax.random.PRNGKey(0))
        assert sum(w.size for w in jax.tree.leaves(params)) <= 5210, model
