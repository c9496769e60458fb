"""Nothing lost: a run killed at any moment resumes to the bitwise result of an uninterrupted
one; a checkpoint that does not restore is passed over for an older one; one process per
run folder; Ctrl-C at any moment is one line and exit 130. ``make test`` kills at 2 moments
(mid-run, before the first checkpoint and after one) and interrupts during the imports (and
mid-run, below); ``make reliability`` kills at 20 (``ATTNRNN_KILL_POINTS``: those two and 18
spread over the run) and interrupts at 20 (``ATTNRNN_INTERRUPT_POINTS``, spread over the run
from its start), the figures docs/reliability.md records."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import pytest

from attnrnn.train import TrainConfig, cli, run
from attnrnn.train.checkpoints import load_params
from helpers import assert_tree_equal

ARGS = ["--level", "easy", "--hidden", "8", "--heldout", "256", "--eval-every", "10",
        "--steps", "300", "--checkpoint-every", "20", "--no-progress"]
KILL_POINTS = int(os.environ.get("ATTNRNN_KILL_POINTS", "2"))
INTERRUPT_POINTS = int(os.environ.get("ATTNRNN_INTERRUPT_POINTS", "1"))
COMMAND = Path(sys.executable).parent / "attnrnn"  # the installed command, as a user runs it


def _cli(*argv):
    """``attnrnn`` in a fresh process: default JAX settings, as a user runs it."""
    return subprocess.Popen([COMMAND, *map(str, argv)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _result(out):
    config = TrainConfig(**json.loads((out / "config.json").read_text())["config"])
    params = load_params(out / "params", config.build_model().init(jax.random.PRNGKey(0)))
    return params, run.read_metrics(out)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("reference") / "run"
    start = time.perf_counter()
    proc = _cli("train", *ARGS, "--out", out)
    assert proc.wait() == 0, proc.stderr.read()
    return out, time.perf_counter() - start


def _finish(out):
    """What a user does after a crash: resume the folder if it exists, else start again."""
    again = (_cli("train", "--resume", out, "--no-progress") if (out / "config.json").exists()
             else _cli("train", *ARGS, "--out", out))
    assert again.wait() == 0, again.stderr.read()


def _stage(out):
    return ("no run folder yet" if not (out / "config.json").exists() else
            "after the run ended" if (out / "summary.json").exists() else
            "after a checkpoint" if any(p.name.isdigit() for p in (out / "checkpoints").glob("*"))
            else
            "before the first checkpoint")


def _wait_for(stage, out, proc, timeout=120):
    """Polls until the run in ``out`` reaches ``stage`` (the moment to kill it)."""
    deadline = time.perf_counter() + timeout
    while _stage(out) != stage:
        assert proc.poll() is None, f"the run ended before {stage!r}: {proc.stderr.read()}"
        assert time.perf_counter() < deadline, f"no {stage!r} within {timeout} s"
        time.sleep(0.005)


def test_killed_at_any_moment_resumes_bitwise(reference, tmp_path):
    """Two kills land where they must (mid-run, before the first checkpoint and after one);
    with ATTNRNN_KILL_POINTS > 2 the others are spread over the run's duration."""
    out_ref, seconds = reference
    expected_params, expected_metrics = _result(out_ref)
    assert [r["step"] for r in expected_metrics] == list(range(301))
    # Kill moments spread from right after the start to near the end of a run.
    timed = KILL_POINTS - 2
    moments = ["before the first checkpoint", "after a checkpoint",
               *(0.2 + i * (0.95 * seconds - 0.2) / max(timed - 1, 1) for i in range(timed))]
    survived, stages = 0, {"no run folder yet": 0, "before the first checkpoint": 0,
                           "after a checkpoint": 0, "after the run ended": 0}
    for i, moment in enumerate(moments):
        out = tmp_path / f"killed-{i}"
        proc = _cli("train", *ARGS, "--out", out)
        if isinstance(moment, str):
            _wait_for(moment, out, proc)
        else:
            time.sleep(moment)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        stage = _stage(out)
        assert not isinstance(moment, str) or stage == moment
        stages[stage] += 1
        _finish(out)
        params, metrics = _result(out)
        assert_tree_equal(params, expected_params)
        assert metrics == expected_metrics, f"killed at {moment}"
        survived += 1
    assert stages["before the first checkpoint"] >= 1 and stages["after a checkpoint"] >= 1
    print(f"kill -9 at {len(moments)} moments over {seconds:.1f} s: {survived}/{len(moments)} "
          f"resumed runs bitwise equal to the uninterrupted one; killed {stages}")


def test_ctrl_c_at_any_moment_is_one_line_and_resumes_bitwise(reference, tmp_path):
    """SIGINT at moments spread from 0.3 s (the libraries still importing) to the run's end:
    exit 130 and one line every time (it was a 63-line traceback during the imports, and a
    segmentation fault at exit in some runs); then the folder resumed (or the run started
    again where none was made) ends bitwise like the uninterrupted run."""
    out_ref, seconds = reference
    expected_params, expected_metrics = _result(out_ref)
    moments = [0.3 + i * (0.95 * seconds - 0.3) / max(INTERRUPT_POINTS - 1, 1)
               for i in range(INTERRUPT_POINTS)]
    stages = dict.fromkeys(["no run folder yet", "before the first checkpoint",
                            "after a checkpoint", "after the run ended"], 0)
    for i, moment in enumerate(moments):
        out = tmp_path / f"interrupted-{i}"
        proc = _cli("train", *ARGS, "--out", out)
        time.sleep(moment)
        proc.send_signal(signal.SIGINT)
        err = proc.stderr.read().strip()
        code = proc.wait()
        finished = code == 0 and not err  # the run ended before the signal came
        assert finished or code == 130, (moment, code, err)
        assert finished or len(err.splitlines()) == 1 and "interrupted" in err, (moment, err)
        stages[_stage(out)] += 1
        _finish(out)
        params, metrics = _result(out)
        assert_tree_equal(params, expected_params)
        assert metrics == expected_metrics, f"interrupted at {moment:.2f} s"
    assert stages["no run folder yet"] >= 1  # the first, during the imports
    print(f"Ctrl-C at {len(moments)} moments over {seconds:.1f} s: all one line, exit 130 (or "
          f"the run had ended), resumed bitwise; stages {stages}")


def test_ctrl_c_is_one_line_and_resumes_bitwise(reference, tmp_path):
    """SIGINT (Ctrl-C) mid-run after a checkpoint: exit 130, one line saying where the run
    stands and how to continue; the resumed run ends bitwise like the uninterrupted one."""
    out_ref, _ = reference
    expected_params, expected_metrics = _result(out_ref)
    out = tmp_path / "interrupted"
    proc = _cli("train", *ARGS, "--out", out)
    _wait_for("after a checkpoint", out, proc)
    proc.send_signal(signal.SIGINT)
    err = proc.stderr.read().strip()
    assert proc.wait() == 130, err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("attnrnn train: interrupted; attnrnn train --resume ")
    assert "continues at the checkpoint of step" in err
    _finish(out)
    params, metrics = _result(out)
    assert_tree_equal(params, expected_params)
    assert metrics == expected_metrics


def test_ctrl_c_without_checkpoints_keeps_the_last_chunk(reference, tmp_path):
    """Without --checkpoint-every, Ctrl-C mid-run saves the state of the chunk under way at its
    end (the run kept nothing and resumed from the start): exit 130, one line naming that
    step, and the resumed run ends bitwise like the uninterrupted one."""
    out_ref, _ = reference
    expected_params, expected_metrics = _result(out_ref)
    out = tmp_path / "interrupted"
    args = [a for a in ARGS if a not in ("--checkpoint-every", "20")]
    proc = _cli("train", *args, "--out", out)
    deadline = time.perf_counter() + 120
    while not (out / "metrics.jsonl").exists() or len(
            (out / "metrics.jsonl").read_text().splitlines()) < 12:  # past the first chunk
        assert proc.poll() is None and time.perf_counter() < deadline, proc.stderr.read()
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    err = proc.stderr.read().strip()
    assert proc.wait() == 130, err
    assert len(err.splitlines()) == 1, err
    step = int(err.split("continues at the checkpoint of step ")[1])
    assert 10 <= step < 300 and step % 10 == 0, err
    _finish(out)
    params, metrics = _result(out)
    assert_tree_equal(params, expected_params)
    assert metrics == expected_metrics


def test_newest_checkpoint_corrupted_falls_back(reference, tmp_path):
    """Every file of the newest checkpoint truncated: resume warns, uses the one before, and
    ends bitwise like the uninterrupted run; the bad one is kept aside."""
    out_ref, _ = reference
    expected = _result(out_ref)
    out = tmp_path / "run"
    shutil.copytree(out_ref, out)  # a finished run, as the reference left it
    newest = max((out / "checkpoints").glob("[0-9]*"), key=lambda p: int(p.name))
    for path in newest.rglob("*"):
        if path.is_file():
            path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 3])
    resumed = _cli("train", "--resume", out, "--no-progress")  # default JAX settings
    err = resumed.stderr.read()
    assert resumed.wait() == 0, err
    assert f"warning: checkpoint {newest} cannot be restored" in err
    assert len(err.strip().splitlines()) <= 3, err  # no tracebacks around the warning
    assert (out / "checkpoints-corrupt" / newest.name).is_dir()
    params, metrics = _result(out)
    assert_tree_equal(params, expected[0])
    assert metrics == expected[1]


def test_one_process_per_folder(tmp_path, capsys):
    out = tmp_path / "run"
    proc = _cli("train", *ARGS[:-3], "--steps", "5000", "--no-progress", "--out", out)
    deadline = time.time() + 60
    while not (out / "config.json").exists() and time.time() < deadline:
        time.sleep(0.05)
    try:
        assert cli.main(["train", "--resume", str(out), "--no-progress"]) == 2
        assert "is in use by another attnrnn process" in capsys.readouterr().err
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # The killed process held the lock; the kernel let it go.
    handle = run._lock(out)
    assert handle is not None
    handle.close()


def test_an_interrupt_python_could_only_print_stops_the_run_at_a_chunk_end(tmp_path, capsys):
    """A KeyboardInterrupt raised where Python cannot raise (here a ``__del__``; in a run,
    JAX's garbage-collector callback) was printed as a traceback and the run went on to the
    end; kept, it stops the run at its next chunk end like any Ctrl-C, state saved."""

    class RaisesWhenCollected:
        def __del__(self):
            raise KeyboardInterrupt

    out = tmp_path / "run"
    config = TrainConfig(level="easy", hidden=8, heldout=256, eval_every=10, steps=300)
    with run.interrupts_kept():
        RaisesWhenCollected()  # collected at once: Python hands the interrupt to the hook
        with pytest.raises(KeyboardInterrupt):
            run.start_run(config, out, progress=False)
    assert capsys.readouterr().err == ""
    assert [p.name for p in (out / "checkpoints").glob("[0-9]*")] == ["0"]
    assert [r["step"] for r in run.read_metrics(out)] == [0]
