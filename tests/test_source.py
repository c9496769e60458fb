"""The source stays readable: no function of the library longer than 50 lines of code (its
docstring not counted), so each does one thing a reader can hold in their head."""

import ast
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
