"""One list of direct dependencies: every third-party package the code imports is declared in pyproject.toml."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
OURS = {p.split(".")[0] for p in PROJECT["tool"]["setuptools"]["packages"]}


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def imported_distributions() -> dict[str, set[str]]:
    """Distribution -> the project files importing it (standard library and our own packages left out)."""
    owners = packages_distributions()
    found: dict[str, set[str]] = {}
    for package in OURS:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top in OURS or top in sys.stdlib_module_names or top == "__future__":
                        continue
                    for dist in owners.get(top, [top]):
                        found.setdefault(dist.lower().replace("_", "-"), set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_imported_package_is_a_declared_dependency():
    declared = {_name(r) for r in PROJECT["project"]["dependencies"]}
    missing = {d: sorted(files)[:3] for d, files in imported_distributions().items() if d not in declared}
    assert not missing, f"imported but not declared in [project].dependencies: {missing}"


def test_every_declared_dependency_is_pinned_in_the_lock():
    lock = {_name(line) for line in (ROOT / "requirements.lock").read_text().splitlines() if line and line[0] != "#"}
    declared = PROJECT["project"]["dependencies"] + PROJECT["project"]["optional-dependencies"]["dev"]
    assert {_name(r) for r in declared} <= lock
    assert not (ROOT / "requirements.txt").exists(), "a third list of dependencies"
