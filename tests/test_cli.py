import json
import os
from pathlib import Path

import jax
import numpy as np
import pytest

from attnrnn.train import cli, run
from attnrnn.train import TrainConfig, evaluate, heldout_set
from attnrnn.train.checkpoints import load_params

EASY = ["--level", "easy", "--hidden", "8", "--lr", "1e-2", "--heldout", "256",
        "--eval-every", "10", "--no-progress"]


def test_train_writes_every_file(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", *EASY, "--steps", "200", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "held-out accuracy" in printed and f"wrote {out}/" in printed
    for name in ["metrics.jsonl", "curves.png", "summary.json", "config.json", "params",
                 "checkpoints"]:
        assert (out / name).exists(), name
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    records = run.read_metrics(out)
    assert [r["step"] for r in records] == list(range(201))
    for r in records[1:]:
        assert {"step", "sequences_seen", "loss", "accuracy", "grad_norm"} <= r.keys()
        assert r["sequences_seen"] == 32 * r["step"]
    assert sum("heldout_accuracy" in r for r in records) == 21
    summary = json.loads((out / "summary.json").read_text())
    for key in ["heldout_accuracy", "sequences_to_solve", "sequences_seen", "initial_loss",
                "initial_accuracy", "final_loss", "wall_seconds", "skipped_updates", "config"]:
        assert key in summary, key
    assert summary["config"]["steps"] == 200 and summary["sequences_seen"] == 6400
    assert abs(summary["initial_loss"] - np.log(4)) < 0.05
    assert summary["heldout_accuracy"] == records[-1]["heldout_accuracy"]

    # The saved parameters reproduce the held-out accuracy.
    config = TrainConfig(**summary["config"])
    task, model = config.make_task(), config.build_model()
    params = load_params(out / "params", model.init(jax.random.PRNGKey(0)))
    again = evaluate(params, heldout_set(task, config.heldout), model=model)
    assert float(again["accuracy"]) == summary["heldout_accuracy"]


@pytest.mark.parametrize("argv,message", [
    (["--model", "transformer"], "model must be"),
    (["--task", "copying"], "task must be"),
    (["--steps", "0"], "steps must be a positive int"),
    (["--hidden", "-1"], "hidden must be a positive int"),
    (["--batch", "0"], "batch must be a positive int"),
    (["--lr", "-1"], "lr must be a positive"),
    (["--level", "medium"], "level must be one of"),
    (["--devices", "64"], "local device"),  # "must be 1 (the only local device), got 64"
    (["--checkpoint-every", "0"], "checkpoint_every must be a positive int"),
    (["--clip", "0"], "clip must be a positive number, or 'none' for no clipping (--clip none)"),
    (["--protocol", "1997", "--task", "echo"], "protocol 1997 is defined for the tasks"),
    (["--task", "adding", "--length", "5"], "length must be an int >= 22"),
    (["--model", "attention:inf,qk=-1"], "model option 'qk=-1'"),
    (["--task", "echo", "--level", "hard"], "--level is for the temporal-order task"),
    (["--readout", "all"], "readout all needs sequences of one length"),
    (["--layers", "0"], "layers must be a positive int"),
    (["--model", "conv"], "conv needs sequences of one length"),
    (["--model", "lstm1997", "--layers", "2"], "lstm1997 is the paper's whole network"),
    (["--task", "echo", "--model", "gru", "--readout", "all"], "readout all is for a label per"),
    (["--task", "temporal-order", "--length", "50"],
     "--length is for the adding, echo and delayed-letters tasks; --task temporal-order"),
    # Sizes a generator checks only when it runs are checked before the folder is made.
    (["--task", "echo", "--length", "0"], "length must be an int >= 1, got 0"),
    (["--task", "delayed-letters", "--length", "0"], "length must be an int >= 1, got 0"),
    (["--model", "lstm1997", "--hidden", "8"], "--hidden is not for lstm1997"),
])
def test_bad_arguments_exit_2_and_write_nothing(tmp_path, capsys, argv, message):
    out = tmp_path / "never"
    assert cli.main(["train", *argv, "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_unusable_output_folders(tmp_path, capsys):
    a_file = tmp_path / "file"
    a_file.write_text("precious")
    assert cli.main(["train", *EASY, "--out", str(a_file)]) == 2
    assert "is a file" in capsys.readouterr().err
    assert a_file.read_text() == "precious"
    used = tmp_path / "used"
    used.mkdir()
    (used / "notes.txt").write_text("mine")
    assert cli.main(["train", *EASY, "--out", str(used)]) == 2
    assert "already holds files" in capsys.readouterr().err
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert cli.main(["train", *EASY, "--out", str(locked / "run")]) == 2
        assert "cannot write" in capsys.readouterr().err
    for bad, words in ((["--steps", "many"], "--steps: invalid int value"),
                       (["--bidirectional", "maybe"], "expected yes or no, got 'maybe'"),
                       (["--clip", "abc"], "--clip: expected a number > 0 (the global-norm "
                                           "clip) or 'none', got 'abc'")):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["train", *bad])
        assert exit_info.value.code == 2 and words in capsys.readouterr().err
    # The loss-curve study refuses a folder holding files, as training does.
    assert cli.main(["debug-loss", "--out", str(used), "--steps", "1", "--no-progress"]) == 2
    assert "already holds files" in capsys.readouterr().err
    assert sorted(p.name for p in used.iterdir()) == ["notes.txt"]


def test_resume_refuses_foreign_and_truncated_folders(tmp_path, capsys):
    assert cli.main(["train", "--resume", str(tmp_path), "--no-progress"]) == 2
    assert f"--resume {tmp_path} is not an attnrnn run folder" in capsys.readouterr().err

    out = tmp_path / "run"
    assert cli.main(["train", *EASY, "--steps", "20", "--out", str(out)]) == 0
    capsys.readouterr()
    # A checkpoint written for another model.
    config = json.loads((out / "config.json").read_text())
    config["config"]["model"] = "lstm"
    (out / "config.json").write_text(json.dumps(config))
    assert cli.main(["train", "--resume", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert str(out / "checkpoints") in err and "no checkpoint restores" in err
    assert len(err.strip().splitlines()) == 1
    config["config"]["model"] = "gated"
    (out / "config.json").write_text(json.dumps(config))
    # A truncated checkpoint: its array data gone.
    latest = max((out / "checkpoints").glob("[0-9]*"), key=lambda p: int(p.name))
    for path in (latest / "state").rglob("*"):
        if path.is_file() and "metadata" not in path.name:
            path.write_bytes(b"")
    assert cli.main(["train", "--resume", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert str(out / "checkpoints") in err


def test_compare_names_each_runs_task_when_they_differ(tmp_path, capsys, monkeypatch):
    """Runs on several tasks: every curve says its model and task (only the first run's model
    was labelled), and the title lists the tasks in the runs' order (they were sorted)."""
    from attnrnn.train import plots

    drawn = {}
    monkeypatch.setattr(plots, "plot_curves",
                        lambda runs, path, title: drawn.update(labels=list(runs), title=title))
    folders = []
    for level in ("hard", "easy"):
        folder = tmp_path / level
        folder.mkdir()
        config = TrainConfig(level=level, model="gated", steps=2)
        summary = {"config": config.__dict__, "heldout_accuracy": 1.0, "sequences_seen": 64,
                   "wall_seconds": 1.0, "sequences_to_solve": 64, "skipped_updates": 0,
                   "stop_reason": "completed"}
        (folder / "summary.json").write_text(json.dumps(summary))
        (folder / "metrics.jsonl").write_text(json.dumps(
            {"step": 1, "sequences_seen": 32, "loss": 1.3, "accuracy": 0.5}) + "\n")
        folders.append(str(folder))
    assert cli.main(["compare", *folders, "--out", str(tmp_path / "x.png")]) == 0
    assert drawn == {"labels": ["gated on temporal-order (hard)",
                                "gated on temporal-order (easy)"],
                     "title": "temporal-order (hard), temporal-order (easy)"}


def test_compare_plots_runs_side_by_side(tmp_path, capsys):
    """compare reads finished run folders (summary.json, metrics.jsonl) and plots them."""
    for model in ("gated", "attention:inf"):
        folder = tmp_path / model
        folder.mkdir()
        config = TrainConfig(level="easy", model=model, steps=2)
        summary = {"config": config.__dict__, "heldout_accuracy": 1.0, "sequences_seen": 64,
                   "wall_seconds": 1.0, "sequences_to_solve": 64, "skipped_updates": 0,
                   "stop_reason": "completed"}
        (folder / "summary.json").write_text(json.dumps(summary))
        rows = [{"step": 0, "sequences_seen": 0, "heldout_loss": 1.4, "heldout_accuracy": 0.25},
                {"step": 1, "sequences_seen": 32, "loss": 1.3, "accuracy": 0.5},
                {"step": 2, "sequences_seen": 64, "loss": 0.1, "accuracy": 1.0,
                 "heldout_loss": 0.1, "heldout_accuracy": 1.0}]
        (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    png = tmp_path / "both.png"
    assert cli.main(["compare", str(tmp_path / "gated"), str(tmp_path / "attention:inf"),
                     "--out", str(png)]) == 0
    printed = capsys.readouterr().out
    assert "gated on temporal-order" in printed and "attention:inf on temporal-order" in printed
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert cli.main(["compare", str(tmp_path / "nothing"), "--out", str(png)]) == 2
    assert "is not a finished run" in capsys.readouterr().err
    # A figure in a folder that does not exist yet: the folder is made.
    nested = tmp_path / "figures" / "new" / "both.png"
    assert cli.main(["compare", str(tmp_path / "gated"), "--out", str(nested)]) == 0
    assert nested.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # One that cannot be written is one line.
    (tmp_path / "a-file").write_text("")
    capsys.readouterr()
    assert cli.main(["compare", str(tmp_path / "gated"),
                     "--out", str(tmp_path / "a-file" / "x.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("attnrnn compare: error: cannot write --out") and len(
        err.splitlines()) == 1


def test_exactly_the_steps_asked_for(tmp_path, capsys):
    """--steps need not be a multiple of --eval-every: the last chunk is shorter, and the
    evaluations fall at every multiple of --eval-every and at the end."""
    out = tmp_path / "run"
    assert cli.main(["train", *EASY, "--steps", "25", "--out", str(out)]) == 0
    records = run.read_metrics(out)
    assert [r["step"] for r in records] == list(range(26))
    assert [r["step"] for r in records if "heldout_accuracy" in r] == [0, 10, 20, 25]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 25 and summary["sequences_seen"] == 25 * 32
    # The 1997 protocol's budget is exact too: 30 steps of 32 sequences are 960 sequences.
    out = tmp_path / "run1997"
    assert cli.main(["train", "--level", "easy", "--hidden", "8", "--protocol", "1997",
                     "--steps", "30", "--eval-every", "20", "--no-progress",
                     "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["sequences_seen"] <= 960
    if summary["sequences_to_stop"] is None:
        assert summary["sequences_seen"] == 960 and "did not stop within 960 sequences" in printed


def test_resume_takes_only_a_new_budget(tmp_path, capsys):
    """--resume continues the run as configured: flags that would change it are refused in
    one line; --steps extends it; a finished run with nothing left to do is left as it was.
    AttentionRNN(0) (zero-size history weights) saves and resumes like any model; a run
    recorded by an older version (no clipping written as null) resumes unclipped."""
    out = tmp_path / "run"
    assert cli.main(["train", *EASY, "--model", "attention:0", "--steps", "20", "--clip",
                     "none", "--out", str(out)]) == 0
    capsys.readouterr()
    finished = (out / "summary.json").read_bytes()
    assert cli.main(["train", "--resume", str(out), "--no-progress"]) == 0
    assert (out / "summary.json").read_bytes() == finished  # wall_seconds and all
    capsys.readouterr()
    assert cli.main(["train", "--resume", str(out), "--model", "lstm", "--lr", "5", "--out",
                     str(tmp_path / "elsewhere"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--model, --lr, --out would change it" in err
    assert cli.main(["train", "--resume", str(out), "--steps", "0", "--no-progress"]) == 2
    assert "steps must be a positive int, got 0" in capsys.readouterr().err
    assert cli.main(["train", "--resume", str(out), "--steps", "10", "--no-progress"]) == 2
    assert "--steps 10 is fewer than the 20 steps the run has made" in capsys.readouterr().err
    record = json.loads((out / "config.json").read_text())
    assert record["config"]["clip"] == "none"
    record["config"]["clip"] = None
    (out / "config.json").write_text(json.dumps(record))
    assert cli.main(["train", "--resume", str(out), "--steps", "30", "--no-progress"]) == 0
    assert [r["step"] for r in run.read_metrics(out)] == list(range(31))
    assert json.loads((out / "summary.json").read_text())["steps"] == 30
    assert json.loads((out / "config.json").read_text())["config"]["steps"] == 30
    assert json.loads((out / "summary.json").read_text())["config"]["clip"] == "none"
    # ... and equals a run of 30 steps made at once.
    once = tmp_path / "once"
    assert cli.main(["train", *EASY, "--model", "attention:0", "--steps", "30", "--clip",
                     "none", "--out", str(once)]) == 0
    assert [{k: v for k, v in r.items()} for r in run.read_metrics(once)] == run.read_metrics(out)


def test_a_run_recorded_as_bare_attention_inf_resumes_bounded(tmp_path, capsys):
    """Before heads and recency became AttentionRNN(∞)'s default, a run of `attention:inf`
    recorded its model as `attention:inf` (the bounded model): it resumes as that model, equal
    to a run made at once; a run made now records its recipe in full."""
    out, once = tmp_path / "run", tmp_path / "once"
    flags = [*EASY, "--model", "attention:inf,qk=0.7", "--steps"]
    assert cli.main(["train", *flags, "10", "--out", str(out)]) == 0
    record = json.loads((out / "config.json").read_text())
    assert record["config"]["model"] == "attention:inf,raw,nonexp,qk=0.7,v=2"
    record["config"]["model"] = "attention:inf"
    (out / "config.json").write_text(json.dumps(record))
    assert cli.main(["train", "--resume", str(out), "--steps", "20", "--no-progress"]) == 0
    assert cli.main(["train", *flags, "20", "--out", str(once)]) == 0
    assert run.read_metrics(once) == run.read_metrics(out)
    capsys.readouterr()
    assert cli.main(["train", *EASY, "--model", "attention:inf", "--steps", "2", "--out",
                     str(tmp_path / "new")]) == 0
    recorded = json.loads((tmp_path / "new" / "config.json").read_text())["config"]["model"]
    assert recorded == ("attention:inf,raw,nonexp,v=2,scale=0.35,cap=5,heads=8,"
                        "recency=log/0.003/5,bias")  # one head per channel of --hidden 8


def test_out_of_memory_is_one_line(tmp_path, capsys):
    """An allocation XLA refuses (2,560 held-out sequences of 100,000 steps) is one line that
    says what to change, and the folder is left for --resume."""
    out = tmp_path / "run"
    assert cli.main(["train", "--task", "adding", "--length", "100000", "--out", str(out),
                     "--no-progress"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("attnrnn train: error: out of memory (RESOURCE_EXHAUSTED")
    assert f"attnrnn train --resume {out} continues from the start" in err


def test_the_cli_explains_itself(tmp_path, monkeypatch, capsys):
    """--version; --help gives every setting's default and every model option; a run without
    --out gets a new folder each time, never an earlier run's."""
    import attnrnn
    from attnrnn.train.model_spec import MODEL_OPTIONS

    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == \
        f"attnrnn {attnrnn.__version__}"
    parser = cli.build_parser()
    train = parser._subparsers._group_actions[0].choices["train"]
    flags = [a for a in train._actions if a.option_strings and a.nargs != 0
             and a.dest not in ("help", "data", "resume", "coordinator", "num_processes",
                                "process_id", "checkpoint_every")]
    assert [a.dest for a in flags if "default" not in (a.help or "")] == []
    yes_no = [a for a in flags if a.metavar == "yes|no"]  # their defaults read yes or no
    assert yes_no and all("False" not in a.help and "True" not in a.help for a in yes_no)
    model = next(a for a in flags if a.dest == "model")
    assert all(option in model.help for text in MODEL_OPTIONS.values()
               for option in text.split(", "))
    monkeypatch.chdir(tmp_path)
    args = ["train", *EASY, "--steps", "2"]
    assert cli.main(args) == 0 and cli.main(args) == 0
    folders = sorted((tmp_path / "runs").iterdir())
    assert len(folders) == 2 and all((f / "summary.json").exists() for f in folders)
    assert cli.main([*args, "--coordinator", "127.0.0.1:1", "--num-processes", "2",
                     "--process-id", "0"]) == 2
    assert "--out is needed for a run over several processes" in capsys.readouterr().err


def test_a_reader_that_closes_the_pipe_leaves_the_run_whole(tmp_path):
    """``attnrnn train … | head -1``: the reader may be gone before a line is written; the run
    still writes every file and exits 0 without a word on stderr (it was a BrokenPipeError
    traceback, exit 1)."""
    import os
    import subprocess
    import sys

    out = tmp_path / "run"
    read_end, write_end = os.pipe()
    proc = subprocess.Popen([sys.executable, "-m", "attnrnn", "train", *EASY, "--steps", "20",
                             "--out", str(out)], stdout=write_end, stderr=subprocess.PIPE,
                            text=True)
    os.close(write_end)
    os.close(read_end)  # the reader has gone: every line the run prints meets a closed pipe
    assert proc.wait() == 0 and proc.stderr.read() == ""
    assert json.loads((out / "summary.json").read_text())["stop_reason"] == "completed"


@pytest.mark.parametrize("folder, flags", [
    # `attention:inf` named alone then ran eight heads: named in full here. Hidden 16, not 8: a
    # head of one channel (8 heads of 8) has multiplied elementwise since ee506ac, and its runs
    # continue exactly but no longer equal, bit for bit, one made before.
    ("attention-inf-bbc0f92", ["--model", "attention:inf,raw,nonexp,v=2,scale=0.35,cap=5,heads=8,"
                               "recency=0/0.01/0.03/0.1/0.3/0.5/1/2,bias", "--hidden", "16"]),
    ("lstm1997-bbc0f92", ["--model", "lstm1997"])])
def test_a_run_folder_written_before_the_cell_entries_resumes(folder, flags, tmp_path, capsys):
    """Run folders written at bbc0f92, before each cell became one entry of
    ``attnrnn.train.cells`` (tests/saved_runs: ``cli.main`` of `train --level easy --lr 1e-2
    --heldout 256 --eval-every 10 --no-progress --steps 10` and the flags here, under this
    suite's settings, tests/conftest.py), resume: the folder's own rows stay as they were, and
    the run ends with the metrics of one run of the whole budget made now — equal to float32
    rounding, not bit for bit, because the folder was computed on another machine, and XLA's
    code for another CPU rounds differently (one run made and resumed on one machine ends
    bitwise like an uninterrupted one: tests/test_reliability.py)."""
    import shutil

    out, once = tmp_path / "run", tmp_path / "once"
    shutil.copytree(Path(__file__).parent / "saved_runs" / folder, out)
    saved = run.read_metrics(out)
    assert cli.main(["train", "--resume", str(out), "--steps", "20", "--no-progress"]) == 0
    common = ["--level", "easy", "--lr", "1e-2", "--heldout", "256", "--eval-every", "10",
              "--no-progress", *flags]
    assert cli.main(["train", *common, "--steps", "20", "--out", str(once)]) == 0
    resumed = run.read_metrics(out)
    assert resumed[:len(saved)] == saved and len(resumed) > len(saved)
    _assert_rows_close(resumed, run.read_metrics(once))
    capsys.readouterr()


def _assert_rows_close(rows, expected):
    """The same rows with the same keys; counts, steps and flags equal; floats to float32
    rounding."""
    assert [sorted(row) for row in rows] == [sorted(row) for row in expected]
    for row, want in zip(rows, expected):
        for key, value in want.items():
            if isinstance(value, float):
                assert row[key] == pytest.approx(value, rel=1e-5, abs=1e-7), (row["step"], key)
            else:
                assert row[key] == value, (row["step"], key)
