"""The README's code runs as written (its examples are part of the API contract)."""

import re
import shlex
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the examples write files (mine.npz, runs/)
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 4
    namespace = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)  # noqa: S102
        if "make_train_step" in block:
            # The ten-line example trains a bounded AttentionRNN(inf) that learns the task.
            train = namespace["train"]
            result = train.evaluate(namespace["state"].params, train.heldout_set(namespace["task"]),
                                    model=namespace["model"])
            assert float(result["accuracy"]) >= 0.99
        if "array_task" in block:
            # Your own sequences: learned, and evaluated on the whole test split.
            assert namespace["summary"]["test_size"] == 400
            assert namespace["summary"]["test_accuracy"] >= 0.9
    assert namespace["J"].shape == (32, 32)
    # ... and the same data from the command line, as the README writes it.
    from attnrnn.train import cli

    commands = re.findall(r"^attnrnn train --data .*$", README.read_text(), flags=re.M)
    assert commands
    for command in commands:
        assert cli.main([*shlex.split(command)[1:], "--no-progress"]) == 0
        assert "on mine.npz: test accuracy" in capsys.readouterr().out

    assert namespace["a"].shape == (100, 100)


def test_readme_opens_with_the_two_commands():
    lines = README.read_text().splitlines()[:5]
    assert any(line.strip().startswith("make demo") for line in lines)
    assert any(line.strip().startswith("make test") for line in lines)
