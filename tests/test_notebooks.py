"""The notebooks use the public API only and are saved executed, outputs included (the
site renders the saved outputs; pytest --nbmake executes them afresh)."""

import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_notebooks_public_api_only():
    assert [p.stem for p in NOTEBOOKS] == ["01_convolution", "02_gated_rnn", "03_attention_rnn",
                                           "04_training", "05_mnist1d"]
    for path in NOTEBOOKS:
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] == "code":
                assert "attnrnn._" not in "".join(cell["source"]), path.name


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_are_saved_with_their_outputs(notebook):
    cells = [c for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "code"]
    assert [c["execution_count"] for c in cells] == list(range(1, len(cells) + 1)), \
        "run the notebook top to bottom and save it (the site shows the saved outputs)"
    outputs = [o for c in cells for o in c["outputs"]]
    assert not [o for o in outputs if o["output_type"] == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)
