"""docs/ecosystem.md's Flax NNX and Equinox examples run as written and learn their task."""

import re
from pathlib import Path

import pytest

pytest.importorskip("flax.nnx")
pytest.importorskip("equinox")

PAGE = Path(__file__).resolve().parents[1] / "docs" / "ecosystem.md"


def test_examples_run_and_learn():
    namespace = {}
    for block in re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S):
        exec(compile(block, str(PAGE), "exec"), namespace)  # noqa: S102
    assert namespace["nnx_accuracy"] > 0.9 and namespace["eqx_accuracy"] > 0.9  # chance 0.5
    assert type(namespace["params"]).__name__ == "AttentionRNNParams"
