"""The README's code runs as written (its examples are part of the API contract)."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run():
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
    assert namespace["J"].shape == (32, 32)

    assert namespace["a"].shape == (100, 100)


def test_readme_opens_with_the_two_commands():
    lines = README.read_text().splitlines()[:5]
    assert any(line.strip().startswith("make demo") for line in lines)
    assert any(line.strip().startswith("make test") for line in lines)
