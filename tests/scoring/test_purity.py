"""The core stays pure: no module loaded by a name, no environment read or written, no bundle changed.

The import contracts (``lint-imports``) see only static imports; these checks see what they cannot.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "scoring"
MODULES = sorted(CORE.rglob("*.py"))


def offences(tree: ast.AST) -> list[str]:
    """Dynamic imports and environment access in a module's syntax tree, with their line numbers."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            found += [f"line {node.lineno}: imports {n}" for n in names if n.split(".")[0] == "importlib"]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "__import__":
            found.append(f"line {node.lineno}: calls __import__")
        elif isinstance(node, ast.Attribute) and node.attr in {"environ", "getenv", "putenv", "unsetenv"}:
            found.append(f"line {node.lineno}: uses os.{node.attr}")
    return found


def test_the_check_sees_what_it_looks_for():
    code = "import importlib\nimport os\nfrom importlib import import_module\n__import__('x')\nos.environ.get('A')\n"
    assert len(offences(ast.parse(code))) == 4


@pytest.mark.parametrize("module", MODULES, ids=lambda p: str(p.relative_to(CORE)))
def test_no_core_module_imports_by_name_or_touches_the_environment(module):
    assert offences(ast.parse(module.read_text(), filename=str(module))) == []


def test_the_core_has_modules_to_check():
    assert len(MODULES) >= 15 and CORE / "scorer.py" in MODULES
