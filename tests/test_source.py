"""The source stays readable: no function of the library longer than 50 lines of code (its
docstring not counted), so each does one thing a reader can hold in their head."""

import ast
import importlib
import inspect
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "attnrnn"
LIMIT = 50


def _code_lines(node) -> int:
    body = node.body
    first = body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(
            first.value.value, str):
        if len(body) == 1:
            return 0
        first = body[1]
    return node.end_lineno - first.lineno + 1


def test_no_function_over_fifty_lines():
    long = [f"{path.relative_to(SRC.parent)}:{node.lineno} {node.name} ({_code_lines(node)})"
            for path in sorted(SRC.rglob("*.py"))
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and _code_lines(node) > LIMIT]
    assert not long, long


def test_fit_reads_in_one_screen():
    """The host loop's entry point takes a run that is built elsewhere (``build_run``) and
    trains it in at most 30 lines."""
    tree = ast.parse((SRC / "train" / "loop.py").read_text())
    fit = next(node for node in tree.body
               if isinstance(node, ast.FunctionDef) and node.name == "fit")
    assert _code_lines(fit) <= 30


ROOT = SRC.parents[1]


def _library_names(tree) -> set:
    """The names a script binds to attnrnn's modules and objects by importing them."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names
                      if a.name.split(".")[0] == "attnrnn"}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("attnrnn"):
            names |= {a.asname or a.name for a in node.names}
    return names


def _patches(path) -> list:
    """Where a script assigns to an attribute of something it imported from attnrnn, calls
    ``setattr`` on it, or clears a cache (``cache_clear``, ``jax.clear_caches``)."""
    tree = ast.parse(path.read_text())
    library = _library_names(tree)

    def imported(node):
        while isinstance(node, ast.Attribute):
            node = node.value
        return isinstance(node, ast.Name) and node.id in library

    found = []
    for node in ast.walk(tree):
        targets = (node.targets if isinstance(node, ast.Assign) else
                   [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else [])
        found += [node.lineno for t in targets if isinstance(t, ast.Attribute) and imported(t)]
        if isinstance(node, ast.Call):
            name = (node.func.attr if isinstance(node.func, ast.Attribute) else
                    getattr(node.func, "id", None))
            if name in ("cache_clear", "clear_caches") or (
                    name == "setattr" and node.args and imported(node.args[0])):
                found.append(node.lineno)
    return [f"{path.name}:{line}" for line in sorted(found)]


def _scripts() -> list:
    """Every benchmark and experiment script."""
    return sorted([*(ROOT / "benchmarks").rglob("*.py"), *(ROOT / "experiments").rglob("*.py")])


def test_no_experiment_patches_the_library():
    """What a benchmark or an experiment varies is an argument of a public function: none
    assigns to an attribute of an attnrnn module or clears its caches."""
    scripts = _scripts()
    assert scripts
    assert [where for path in scripts for where in _patches(path)] == []


def test_the_patch_finder_finds_patches(tmp_path):
    script = tmp_path / "probe.py"
    script.write_text("import attnrnn.lstm1997 as paper\nfrom attnrnn.train import models\n"
                      "paper._g = abs\nsetattr(paper, '_h', abs)\nmodels.make_model.cache_clear()\n"
                      "x = object()\nx.y = 1\n")
    assert [where.split(":")[1] for where in _patches(script)] == ["3", "4", "5"]


def _missing_names(path) -> list:
    """Where a script imports a name attnrnn does not have, or reads a missing attribute of an
    attnrnn module it imported (``models.BOUNDED`` after ``BOUNDED`` moved to ``cells``)."""
    tree, modules, missing = ast.parse(path.read_text()), {}, []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "attnrnn":
                    modules[a.asname or a.name.split(".")[0]] = importlib.import_module(
                        a.name if a.asname else "attnrnn")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("attnrnn"):
            module = importlib.import_module(node.module)
            for a in node.names:
                if not hasattr(module, a.name):
                    try:  # a submodule, imported by name
                        value = importlib.import_module(f"{node.module}.{a.name}")
                    except ImportError:
                        missing.append(f"{path.name}:{node.lineno} {node.module}.{a.name}")
                        continue
                else:
                    value = getattr(module, a.name)
                if inspect.ismodule(value):
                    modules[a.asname or a.name] = value
    rebound = {node.id for node in ast.walk(tree)  # a name the script reuses for a value
               if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)}
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in modules.keys() - rebound
                and not hasattr(modules[node.value.id], node.attr)):
            missing.append(f"{path.name}:{node.lineno} {node.value.id}.{node.attr}")
    return missing


def test_experiments_read_only_names_the_library_has():
    """A benchmark or experiment is not run by the suite (minutes to hours): that every
    name it takes from attnrnn exists is checked here, so a rename cannot break it quietly."""
    assert [where for path in _scripts() for where in _missing_names(path)] == []


def test_the_missing_name_finder_finds_them(tmp_path):
    script = tmp_path / "probe.py"
    script.write_text("import attnrnn as ar\nfrom attnrnn.train import models, BOUNDED\n"
                      "from attnrnn.train import NOT_THERE\nar.gru\nar.no_such\n"
                      "models.BOUNDED\nmodels.make_model\n")
    assert [where.split(" ")[0].split(":")[1] for where in _missing_names(script)] == [
        "3", "5", "6"]


def _imports(path: Path, modules) -> set:
    """The modules of ``src/`` that a file imports, at its top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.add(full if full in modules else node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found & set(modules)


def test_the_import_graph_has_no_cycle():
    """No module imports one that imports it back, directly or round a longer circle (three
    did: attention and bounds, train.data and train.tasks, train.model_spec and
    train.models, each through an import inside a function)."""
    src = Path(__file__).resolve().parents[1] / "src"
    modules = {".".join(p.relative_to(src).with_suffix("").parts).removesuffix(".__init__"): p
               for p in src.rglob("*.py")}
    graph = {name: _imports(path, modules) - {name} for name, path in modules.items()}
    cycles, state, stack = [], {}, []

    def visit(module):
        state[module] = "open"
        stack.append(module)
        for imported in sorted(graph[module]):
            if state.get(imported) == "open":
                cycles.append(" -> ".join(stack[stack.index(imported):] + [imported]))
            elif imported not in state:
                visit(imported)
        stack.pop()
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module)
    assert cycles == [], cycles
    # ... and nothing runs back up a floor: the library never reads the application (the
    # command's entry points, attnrnn_command and ``python -m attnrnn``, are the application's).
    library = [m for m in graph if m.startswith("attnrnn") and not m.startswith(
        ("attnrnn.train", "attnrnn_command", "attnrnn.__main__"))]
    upward = {m: sorted(i for i in graph[m] if i.startswith(("attnrnn.train", "attnrnn_command")))
              for m in library}
    assert not any(upward.values()), upward
