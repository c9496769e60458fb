"""The documentation site's inputs (`make docs` builds it, strictly, in `.ci/run`): every public
name of the library gets an API page (the notebooks' saved outputs: tests/test_notebooks.py)."""

import ast
from pathlib import Path

import attnrnn

ROOT = Path(__file__).resolve().parent.parent


def _assigned(path: Path, name: str):
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name
                                                for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{path} assigns no {name}")


def test_every_public_name_has_an_api_page():
    modules = _assigned(ROOT / "docs" / "gen_pages.py", "LIBRARY")
    documented = set()
    for module in modules:
        documented |= set(_assigned(ROOT / "src" / (module.replace(".", "/") + ".py"),
                                    "__all__"))
    assert set(attnrnn.__all__) <= documented, set(attnrnn.__all__) - documented
    library = {p.stem for p in (ROOT / "src" / "attnrnn").glob("*.py")
               if not p.stem.startswith("_")}
    assert library == {m.split(".")[1] for m in modules}, "a public module without pages"
