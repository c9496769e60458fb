"""Generates the site's pages at `mkdocs build` time (mkdocs-gen-files): the README as the
home page, one API page per public name of the library and one per module of the training
application, the notebooks (saved with their outputs), and the navigation (SUMMARY.md, read
by mkdocs-literate-nav). Nothing here is written into the repository."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import mkdocs_gen_files

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"

# The library's public modules, each with its own page (its docstring holds the equations)
# and one page per name in its __all__; the package's own names live in these modules.
LIBRARY = ["attnrnn.conv", "attnrnn.gated", "attnrnn.attention", "attnrnn.bounds",
           "attnrnn.spectral", "attnrnn.analysis", "attnrnn.lstm", "attnrnn.lstm1997",
           "attnrnn.gru", "attnrnn.loop", "attnrnn.nnx"]
PAGES = [("Home", "index.md"), ("Theory", "theory.md"), ("Ecosystem: Flax NNX, Equinox",
         "ecosystem.md")]
RESULTS = [("What the models learn", "results.md"), ("MNIST-1D table", "results-mnist1d.md"),
           ("1997 table", "results-1997.md"), ("Held-out table", "results-heldout.md")]
SPEED = [("Performance", "performance.md"), ("Benchmarks (CPU)", "benchmarks.md"),
         ("Benchmarks (GPU)", "benchmarks-gpu.md")]


def module_file(module: str) -> Path:
    path = SRC / Path(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def public_names(module: str) -> list[str]:
    """The module's ``__all__``, read without importing it (the docs need no flax or jax)."""
    tree = ast.parse(module_file(module).read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__"
                                                for t in node.targets):
            return list(ast.literal_eval(node.value))
    return []


def training_modules() -> list[str]:
    folder = SRC / "attnrnn" / "train"
    return ["attnrnn.train"] + [f"attnrnn.train.{p.stem}" for p in sorted(folder.glob("*.py"))
                                if not p.stem.startswith("_")]


TRAINING = training_modules()


def api_page(module: str) -> str:
    return f"api/{module}.md"


def site_link(target: str) -> str | None:
    """A README link target as seen from the site's home page: docs/ pages are pages,
    a module's source file is its API page, anything else has no page (None)."""
    if target.startswith("docs/"):
        return target.removeprefix("docs/")
    if target.startswith("notebooks/"):
        return target
    match = re.fullmatch(r"src/(attnrnn/[a-z0-9_/]+)\.py", target)
    if match:
        module = match.group(1).replace("/", ".")
        if module in LIBRARY or module in TRAINING:
            return api_page(module)
    return None


def home_page() -> str:
    def relink(match):
        text, target = match.group(1), match.group(2)
        if target.startswith("http"):
            return match.group(0)
        link = site_link(target)
        return f"[{text}]({link})" if link else text

    return re.sub(r"\[([^\]]+)\]\(([^)]+)\)", relink, (ROOT / "README.md").read_text())


nav = mkdocs_gen_files.Nav()
with mkdocs_gen_files.open("index.md", "w") as f:
    f.write(home_page())

for title, page in PAGES:
    nav[title] = page
for section, pages in (("Results", RESULTS), ("Speed", SPEED)):
    for title, page in pages:
        nav[section, title] = page
nav["Reliability"] = "reliability.md"

for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
    # Notebooks point at figures in ../docs/; on the site those figures sit one level up.
    with mkdocs_gen_files.open(f"notebooks/{notebook.name}", "w") as f:
        f.write(notebook.read_text().replace("../docs/", "../"))
    nav["Notebooks", notebook.stem.replace("_", " ")] = f"notebooks/{notebook.name}"

for module in LIBRARY:
    with mkdocs_gen_files.open(api_page(module), "w") as f:
        f.write(f"::: {module}\n    options:\n      members: false\n")
    nav["API: the library", module, "Module"] = api_page(module)
    for name in public_names(module):
        page = f"api/{module}.{name}.md"
        with mkdocs_gen_files.open(page, "w") as f:
            f.write(f"::: {module}.{name}\n")
        nav["API: the library", module, name] = page

for module in TRAINING:
    with mkdocs_gen_files.open(api_page(module), "w") as f:
        members = "false" if module == "attnrnn.train" else "true"
        f.write(f"::: {module}\n    options:\n      members: {members}\n")
    nav["API: training", module] = api_page(module)

with mkdocs_gen_files.open("SUMMARY.md", "w") as f:
    f.writelines(nav.build_literate_nav())
