"""Every ``scorepipe ...`` command the README shows parses with the real argument parser."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from scorepipe.cli import parser

README = Path(__file__).resolve().parents[1] / "README.md"
COMMAND = re.compile(r"^(?:[A-Z_]+=\S+\s+)*(?:\.venv/bin/)?scorepipe\s+(?P<args>.+)$")


def readme_commands() -> list[tuple[int, str]]:
    """(line number, arguments) of every command line in the README's code blocks."""
    found, in_code = [], False
    for number, line in enumerate(README.read_text().splitlines(), start=1):
        if line.startswith("```"):
            in_code = not in_code
            continue
        match = COMMAND.match(line.strip()) if in_code else None
        if match:
            found.append((number, match["args"]))
    return found


def argv_of(text: str) -> list[str]:
    """The arguments as a shell would pass them, without comments, optional ``[...]`` parts or a trailing ``&``."""
    words = shlex.split(text, comments=True)
    words = [w for w in words if w != "&"]
    argv, depth = [], 0
    for word in words:
        depth += word.count("[")
        if depth == 0:
            argv.append(word)
        depth -= word.count("]")
    return argv


def test_the_readme_shows_commands():
    assert len(readme_commands()) >= 20


@pytest.mark.parametrize(("line", "args"), readme_commands(), ids=lambda v: str(v) if isinstance(v, int) else None)
def test_every_readme_command_parses(line, args, capsys):
    try:
        parsed = parser().parse_args(argv_of(args))
    except SystemExit:
        pytest.fail(f"README.md line {line}: `scorepipe {args}` does not parse: {capsys.readouterr().err.strip()}")
    assert hasattr(parsed, "handler"), f"README.md line {line}: `scorepipe {args}` names no command"


def test_a_wrong_readme_command_would_be_caught(capsys):
    with pytest.raises(SystemExit):
        parser().parse_args(argv_of("drift s3://lake/scored/date=2026-11-27 --out s3://lake/reports"))
