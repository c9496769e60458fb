"""The notebooks are committed without outputs (pytest --nbmake executes them)."""

import json
from pathlib import Path

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_four_notebooks_stripped_and_public_api_only():
    assert [p.stem for p in NOTEBOOKS] == ["01_convolution", "02_gated_rnn", "03_attention_rnn",
                                           "04_training"]
    for path in NOTEBOOKS:
        book = json.loads(path.read_text())
        for cell in book["cells"]:
            if cell["cell_type"] == "code":
                assert cell["outputs"] == [] and cell["execution_count"] is None, path.name
                assert "attnrnn._" not in "".join(cell["source"]), path.name
