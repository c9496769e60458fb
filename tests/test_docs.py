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


def _load(path: Path):
    import importlib.util

    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_math_is_rendered_at_build_time():
    """The docs hook turns arithmatex's TeX (``aligned`` included) into MathML."""
    hook = _load(ROOT / "docs" / "hooks" / "mathml.py")
    page = ('<div class="arithmatex">\\[\\begin{aligned} c[t] &amp;= \\sigma(W_c\\, x[t]) \\\\ '
            'h &amp;= x \\end{aligned}\\]</div> and <span class="arithmatex">\\(h_t\\)</span>')
    out = hook.on_page_content(page, None, None, None)
    assert out.count("<math") == 2 and "arithmatex" not in out
    assert "<mtable class=\"aligned\" displaystyle=\"true\">" in out  # lined up by math.css
    assert "&amp;" not in out and "<mi>&</mi>" not in out


def test_formulas_written_as_code_are_typeset_and_code_stays_code():
    """A code span holding a Unicode formula (as the docstrings write them) becomes MathML;
    a model string, a code block and a table's configuration string stay code, the last
    breakable only between its options."""
    hook = _load(ROOT / "docs" / "hooks" / "mathml.py")
    page = ("<p><code>∂ℓ/∂W_x</code>, <code>‖V_x' x‖ ≤ c ‖x‖₁</code> and "
            "<code>attention:inf,heads=4</code></p><pre><code>∂ℓ/∂W_x</code></pre>"
            "<table><tr><td><code>gated,bi/x</code></td></tr></table>")
    out = hook.on_page_content(page, None, None, None)
    assert out.count("<math") == 2 and "<mo>&#x02202;</mo>" in out  # ∂ typeset
    assert "<code>attention:inf,heads=4</code>" in out
    assert "<pre><code>∂ℓ/∂W_x</code></pre>" in out
    assert "<code>gated,<wbr>bi/<wbr>x</code>" in out
    tex = hook.to_tex("w, b ~ U(-1/√fan_in, 1/√fan_in) ∈ R^m")
    assert tex == (r"w, b \sim  U(-1/\sqrt{\mathrm{fan}_{\mathrm{in}}}, "
                   r"1/\sqrt{\mathrm{fan}_{\mathrm{in}}}) \in  \mathbb{R}^m")


def test_site_check_finds_what_a_page_fetches(tmp_path):
    """docs/check_site.py (run by `make docs` on the built site) can fail."""
    check = _load(ROOT / "docs" / "check_site.py")
    (tmp_path / "api").mkdir()
    for module in check.EQUATIONS:
        (tmp_path / "api" / f"{module}.html").write_text("<math><mi>h</mi></math>")
    (tmp_path / "index.html").write_text("<a href='https://example.org'>a link is fine</a>")
    assert check.problems(tmp_path) == []
    (tmp_path / "index.html").write_text(
        '<script src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"></script>'
        '<link rel="stylesheet" href="https://fonts.googleapis.com/css">')
    (tmp_path / "api" / "attnrnn.gated.html").write_text("\\[ c[t] = \\sigma(x) \\]")
    found = check.problems(tmp_path)
    assert len(found) == 3 and "api/attnrnn.gated.html" in found[-1]


def test_results_include_each_generated_table_from_its_one_file():
    """docs/results.md includes the tables its commands write (pymdownx.snippets) instead of a
    copy that could drift from them."""
    import re

    text = (ROOT / "docs" / "results.md").read_text()
    included = re.findall(r'^--8<-- "(.+)"$', text, flags=re.M)
    assert set(included) >= {"results-mnist1d.md", "results-1997.md", "results-heldout.md",
                             "experiments/realdata/results.md"}
    for name in included:
        path = ROOT / "docs" / name if (ROOT / "docs" / name).exists() else ROOT / name
        table = path.read_text().strip().splitlines()
        assert table[0].startswith("| ") and not any(row in text for row in table[2:]), name


def test_results_open_with_a_table_and_keep_provenance_in_the_experiments():
    """docs/results.md shows a table within its first 30 lines; where the numbers came from
    (machines, sessions) lives in the experiments' LOG.md files, not in the docs."""
    import re

    lines = (ROOT / "docs" / "results.md").read_text().splitlines()
    assert any(line.startswith(("|---", '--8<-- "')) for line in lines[:30])
    for page in ["results.md", "performance.md"]:
        text = (ROOT / "docs" / page).read_text()
        assert not re.search(r"\bissue \d|\bsession\b|\blent\b", text), page
    for experiment in ["paper1997", "attention", "lstm1997_adding", "mnist1d"]:
        folder = ROOT / "experiments" / experiment
        assert (folder / "README.md").exists() and (folder / "LOG.md").exists(), experiment
    assert not list((ROOT / "docs").glob("*.jsonl"))  # raw rows live beside their experiment
