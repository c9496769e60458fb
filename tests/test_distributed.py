"""One run over two processes on this machine (coordinator 127.0.0.1, gloo collectives, two
forced CPU devices each), as the README's multi-host commands start it: it equals one process
with four devices, and a lost process stops the other at once with one line, after which
the same commands with --resume finish the run bitwise like an uninterrupted one."""

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from attnrnn.train import TrainConfig, distributed, run
from attnrnn.train.checkpoints import load_params

README = Path(__file__).resolve().parents[1] / "README.md"
# The README's multi-host commands (one per process), run here with a smaller budget.
COMMANDS = [shlex.split(line)[1:] for line in re.findall(
    r"^attnrnn train .*--coordinator host0:1234 .*$", README.read_text(), flags=re.M)]
SMALL = ["--hidden", "8", "--steps", "100", "--eval-every", "10", "--checkpoint-every", "20",
         "--heldout", "256", "--no-progress"]


def test_the_readme_gives_one_command_per_process():
    assert len(COMMANDS) == 2
    assert [c[c.index("--process-id") + 1] for c in COMMANDS] == ["0", "1"]
    assert all(c[c.index("--coordinator"):c.index("--coordinator") + 6] ==
               ["--coordinator", "host0:1234", "--num-processes", "2", "--process-id", str(i)]
               for i, c in enumerate(COMMANDS))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(argv, devices):
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
           "JAX_PLATFORMS": "cpu"}
    return subprocess.Popen([sys.executable, "-m", "attnrnn", *argv], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _here(command, out, port):
    """A README command on this machine: the coordinator on 127.0.0.1, the run in ``out``."""
    return [str(out) if arg == "/shared/runs/dp" else
            f"127.0.0.1:{port}" if arg == "host0:1234" else arg for arg in command]


def _two(out, resume=False):
    """The README's commands, one process each (two CPU devices), on a free port; resumed:
    the same commands with --resume instead of the training flags."""
    port = _free_port()
    procs = []
    for command in COMMANDS:
        argv = _here(command, out, port) + SMALL
        if resume:
            multi = argv.index("--coordinator")
            argv = ["train", "--resume", str(out), "--no-progress", *argv[multi:multi + 6]]
        procs.append(_start(argv, 2))
    return procs


def _ours(stderr):
    """Our lines of a process's stderr (gloo prints its connections there too)."""
    return [line for line in stderr.strip().splitlines() if not line.startswith("[Gloo]")]


def _finish(procs, quiet=False):
    """Waits for every process to succeed; ``quiet``: with nothing of ours on stderr (process
    0's watchdog printed an ``UNAVAILABLE`` traceback after a finished run, 1 time in 7)."""
    for proc in procs:
        err = proc.stderr.read()
        assert proc.wait(timeout=300) == 0, err[-3000:]
        assert not quiet or not _ours(err), err[-3000:]


def _result(out):
    config = TrainConfig(**json.loads((out / "config.json").read_text())["config"])
    params = load_params(out / "params", config.build_model().init(jax.random.PRNGKey(0)))
    return [np.asarray(leaf) for leaf in jax.tree.leaves(params)], run.read_metrics(out)


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    out = tmp_path_factory.mktemp("two") / "run"
    _finish(_two(out), quiet=True)
    return out


def test_two_processes_equal_four_devices_in_one(two_processes, tmp_path):
    """Equal to float32 rounding, not bitwise: gloo sums the four devices' gradients in
    another order than one process's all-reduce does."""
    one = tmp_path / "one"
    single = _here(COMMANDS[0], one, 0)
    multi = single.index("--coordinator")
    _finish([_start(single[:multi] + single[multi + 6:] + SMALL, devices=4)])
    (params_two, metrics_two), (params_one, metrics_one) = _result(two_processes), _result(one)
    summary = json.loads((two_processes / "summary.json").read_text())
    assert summary["devices"] == 4 and summary["steps"] == 100
    assert [r["step"] for r in metrics_two] == [r["step"] for r in metrics_one] == list(range(101))
    for a, b in zip(metrics_two, metrics_one, strict=True):
        for key in ("loss", "heldout_loss"):
            if key in a:
                np.testing.assert_allclose(a[key], b[key], rtol=1e-5, err_msg=key)
    for a, b in zip(params_two, params_one, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    # One folder, written once: process 0's files, every process's checkpoints.
    assert sorted(p.name for p in two_processes.iterdir()) == [
        ".lock", "checkpoints", "config.json", "curves.png", "metrics.jsonl", "params",
        "summary.json"]


def test_a_lost_process_stops_the_other_and_both_resume(two_processes, tmp_path):
    out = tmp_path / "run"
    procs = _two(out)
    deadline = time.monotonic() + 120
    while not any(p.name.isdigit() for p in (out / "checkpoints").glob("*")):
        assert time.monotonic() < deadline and procs[0].poll() is None, procs[0].stderr.read()
        time.sleep(0.01)
    procs[1].send_signal(signal.SIGKILL)
    lost_at = time.monotonic()
    assert procs[0].wait(timeout=distributed.LOST_AFTER + 20) == 1
    waited = time.monotonic() - lost_at
    procs[1].wait()
    lines = _ours(procs[0].stderr.read())
    assert len(lines) == 1, lines
    assert lines[0].startswith("attnrnn train: error: process 0: ") and "process 1" in lines[0]
    assert f"start every process again with --resume {out}" in lines[0]
    assert waited < distributed.LOST_AFTER + 5
    _finish(_two(out, resume=True))
    (params, metrics), (expected_params, expected_metrics) = _result(out), _result(two_processes)
    assert metrics == expected_metrics
    for a, b in zip(params, expected_params, strict=True):
        np.testing.assert_array_equal(a, b)


def test_data_from_arrays_splits_over_processes_as_generated_batches(tmp_path):
    """A --data run over two processes equals the same run in one process with four devices
    (each step's batch is taken from the same walk through the arrays and split the same
    way), to float32 rounding."""
    from test_data import save_npz

    data = save_npz(tmp_path / "mine.npz")
    flags = ["train", "--data", str(data), "--hidden", "8", "--batch", "32", "--steps", "30",
             "--eval-every", "10", "--no-progress"]
    port = _free_port()
    two, one = tmp_path / "two", tmp_path / "one"
    multi = ["--coordinator", f"127.0.0.1:{port}", "--num-processes", "2"]
    _finish([_start([*flags, "--out", str(two), *multi, "--process-id", str(i)], 2)
             for i in (0, 1)] + [_start([*flags, "--out", str(one)], 4)])
    (params_two, metrics_two), (params_one, metrics_one) = _result(two), _result(one)
    assert [r["step"] for r in metrics_two] == list(range(31))
    for a, b in zip(metrics_two, metrics_one, strict=True):
        np.testing.assert_allclose(a.get("loss", 0), b.get("loss", 0), rtol=1e-5)
        np.testing.assert_allclose(a.get("test_loss", 0), b.get("test_loss", 0), rtol=1e-5)
    for a, b in zip(params_two, params_one, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
