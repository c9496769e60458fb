"""The README's code runs as written (its examples are part of the API contract)."""

import re
import shlex
from pathlib import Path

import numpy as np

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
        if "array_task" in block and "class_names" not in block:
            # Your own sequences: learned, and evaluated on the whole test split.
            assert namespace["summary"]["test_size"] == 400
            assert namespace["summary"]["test_accuracy"] >= 0.9
        if "class_names" in block:
            # ... and a list of different lengths with string labels, classes by name.
            walks, result = namespace["walks"], namespace["result"]
            assert walks.class_names == ("falling", "rising") and len(walks.train) == 3
            assert result["class_names"] == ["falling", "rising"]
            assert np.sum(result["test_confusion"]) == 100 and result["test_accuracy"] >= 0.9
    assert namespace["J"].shape == (32, 32)
    # Your own cell: the padded steps (reverse: processed first) hold the zero state.
    assert namespace["hs"].shape == (100, 32) and namespace["batch"].shape == (4, 100, 32)
    assert not namespace["hs"][70:].any() and namespace["hs"][:70].all()
    assert set(namespace["grads"]) == {"W_z", "U_z", "W"}
    # ... and the same data from the command line, as the README writes it.
    from attnrnn.train import cli

    commands = re.findall(r"^attnrnn train --data .*$", README.read_text(), flags=re.M)
    assert commands
    for command in commands:
        assert cli.main([*shlex.split(command)[1:], "--no-progress"]) == 0
        assert "on mine.npz: test accuracy" in capsys.readouterr().out

    assert namespace["a"].shape == (100, 100, 4)  # the last block's: four heads' weights
    np.testing.assert_allclose(namespace["a"].sum(1), 1, rtol=1e-5)


def test_readme_opens_with_the_two_commands():
    lines = README.read_text().splitlines()[:10]  # after the one sentence of what it is
    assert any(line.strip().startswith("make demo") for line in lines)
    assert any(line.strip().startswith("make test") for line in lines)


def test_readme_links_resolve_in_a_clone():
    """Every relative link of the README names a file of the repository (the site's copy of
    the README is checked by `make docs`, strictly)."""
    targets = re.findall(r"\]\(([^)\s]+)\)", README.read_text())
    local = [t.split("#")[0] for t in targets if not re.match(r"[a-z]+:", t) and t[0] != "#"]
    assert local
    missing = [t for t in local if not (README.parent / t).exists()]
    assert missing == []
    assert "../" not in "".join(local)  # nothing outside the repository


def test_readme_first_screen_is_the_sentence_the_commands_and_an_example():
    first = README.read_text().splitlines()[:40]
    text = "\n".join(first)
    assert "attnrnn is a JAX library" in text
    assert "make demo" in text and "make test" in text and "pip install" in text
    assert "```python" in text and "ar.attention_rnn(" in text


def test_readme_flag_table_names_every_train_flag():
    """Each flag of ``attnrnn train`` has a row in the README's flag table (--position and
    --heldout had none)."""
    from attnrnn.train import cli

    train = cli.build_parser()._subparsers._group_actions[0].choices["train"]
    flags = {o for a in train._actions for o in a.option_strings if o.startswith("--")}
    rows = [line.split(" | ")[0] for line in README.read_text().splitlines()
            if line.startswith("| `--")]
    named = set(re.findall(r"`(--[a-z-]+)", " ".join(rows)))
    assert flags == named, (sorted(flags - named), sorted(named - flags))
