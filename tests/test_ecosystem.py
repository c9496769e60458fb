"""Every docs page's Python runs as written, each block on its own (a fresh namespace), and
docs/ecosystem.md's Flax NNX and Equinox examples learn their task."""

import re
from pathlib import Path

import pytest

pytest.importorskip("flax.nnx")
pytest.importorskip("equinox")

PAGE = Path(__file__).resolve().parents[1] / "docs" / "ecosystem.md"


def blocks(page):
    return re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)


def run_alone(block, page) -> dict:
    namespace = {}
    exec(compile(block, str(page), "exec"), namespace)  # noqa: S102
    return namespace


def test_examples_run_alone_and_learn():
    nnx_block, eqx_block = blocks(PAGE)
    flax = run_alone(nnx_block, PAGE)
    assert flax["nnx_accuracy"] > 0.9  # chance 0.5
    assert type(flax["params"]).__name__ == "AttentionRNNParams"
    assert run_alone(eqx_block, PAGE)["eqx_accuracy"] > 0.9
