"""The README and the docs pages say what is true.

Every ``scorepipe ...`` command in their code blocks parses with the real argument parser, the README still
opens with the two fresh-machine commands, and the configuration reference lists every setting without a
secret's value.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path
from types import ModuleType

import pytest
from pydantic import Field, SecretStr

from scorepipe.cli import parser
from scorepipe.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = [README, *sorted(DOCS.rglob("*.md"))]
COMMAND = re.compile(r"^(?:[A-Z_]+=\S+\s+)*(?:\.venv/bin/)?scorepipe\s+(?P<args>.+)$")


def commands(page: Path) -> list[tuple[int, str]]:
    """(line number, arguments) of every command line in a markdown file's code blocks."""
    found, in_code = [], False
    for number, line in enumerate(page.read_text().splitlines(), start=1):
        if line.lstrip().startswith("```"):
            in_code = not in_code
            continue
        match = COMMAND.match(line.strip()) if in_code else None
        if match:
            found.append((number, match["args"]))
    return found


def readme_commands() -> list[tuple[int, str]]:
    """(line number, arguments) of every command line in the README's code blocks."""
    return commands(README)


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


DOCUMENTED = [(page.relative_to(ROOT).as_posix(), line, args) for page in PAGES for line, args in commands(page)]


def test_the_readme_shows_commands():
    assert len(readme_commands()) >= 20


def test_the_docs_pages_are_checked_too():
    assert len(PAGES) >= 20, "the docs pages moved?"
    pages_with_commands = {page for page, _, _ in DOCUMENTED if page.startswith("docs/")}
    assert {"docs/batch.md", "docs/stream.md", "docs/performance.md", "docs/secured-kafka.md"} <= pages_with_commands


def test_the_readme_opens_with_the_two_fresh_machine_commands():
    text = README.read_text()
    first_block = text.split("```")[1].strip().splitlines()
    assert first_block[0].startswith("make demo")
    assert any(line.startswith("make test") for line in first_block)
    assert len(text.splitlines()) <= 250, "the README is the landing page: the rest belongs in docs/"


@pytest.mark.parametrize(("page", "line", "args"), DOCUMENTED, ids=[f"{page}:{line}" for page, line, _ in DOCUMENTED])
def test_every_documented_command_parses(page, line, args, capsys):
    try:
        parsed = parser().parse_args(argv_of(args))
    except SystemExit:
        pytest.fail(f"{page} line {line}: `scorepipe {args}` does not parse: {capsys.readouterr().err.strip()}")
    assert hasattr(parsed, "handler"), f"{page} line {line}: `scorepipe {args}` names no command"


def test_a_wrong_readme_command_would_be_caught(capsys):
    with pytest.raises(SystemExit):
        parser().parse_args(argv_of("drift s3://lake/scored/date=2026-11-27 --out s3://lake/reports"))


def settings_reference() -> ModuleType:
    """The MkDocs hook that writes the configuration reference, loaded from its file like mkdocs does."""
    spec = importlib.util.spec_from_file_location("settings_reference", DOCS / "hooks" / "settings_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_configuration_reference_lists_every_setting():
    hook = settings_reference()
    source = (DOCS / "configuration.md").read_text()
    assert hook.MARKER in source
    page = hook.on_page_markdown(source, page=None, config=None, files=None)
    assert hook.MARKER not in page
    rows = [row for row in page.splitlines() if row.startswith("| `")]
    assert len(rows) == len(Settings.model_fields)
    for name, field in Settings.model_fields.items():
        row = next((r for r in rows if f"`SCOREPIPE_{name.upper()}`" in r), None)
        assert row is not None, f"SCOREPIPE_{name.upper()} is missing from docs/configuration.md"
        assert (field.description or "").split("`")[0] in row
    assert "`MLFLOW_TRACKING_URI`" in page, "MLflow's own variable is read too"


def test_the_configuration_reference_never_shows_a_secret():
    hook = settings_reference()

    class WithSecretDefaults(Settings):
        api_key: SecretStr | None = Field(default=SecretStr("not-to-be-printed"), description="A key.")
        kafka_sasl_password: SecretStr | None = Field(default=SecretStr("nor-this"), description="A password.")

    table = hook.settings_table(WithSecretDefaults)
    assert "not-to-be-printed" not in table and "nor-this" not in table
    for variable in ("SCOREPIPE_API_KEY", "SCOREPIPE_KAFKA_SASL_PASSWORD"):
        row = next(r for r in table.splitlines() if f"`{variable}`" in r)
        assert row.split("|")[3].strip() == "(secret)"

    secrets = [name for name, field in Settings.model_fields.items() if "SecretStr" in str(field.annotation)]
    assert secrets, "Settings has secrets to hide"
    for row in hook.settings_table().splitlines():
        if any(f"`SCOREPIPE_{name.upper()}`" in row for name in secrets):
            assert row.split("|")[3].strip() in ("", "(secret)")


VARIABLE = re.compile(r"\bSCOREPIPE_[A-Z0-9_]*[A-Z0-9]\b")  # a whole name: not the SCOREPIPE_KAFKA_* family
DEPLOYMENT = [ROOT / "docker-compose.yml", *sorted((ROOT / "deploy").rglob("*.yaml"))]


def documented_variables() -> dict[str, list[str]]:
    """Every ``SCOREPIPE_*`` name the README, the docs and the deployment files mention, with where."""
    found: dict[str, list[str]] = {}
    for path in [README, *sorted(DOCS.rglob("*.md")), *DEPLOYMENT]:
        for name in VARIABLE.findall(path.read_text()):
            found.setdefault(name, []).append(str(path.relative_to(ROOT)))
    return found


def test_every_documented_variable_is_a_setting():
    """A name in the docs or the manifests that no setting reads would be silently ignored by pydantic-settings."""
    assert Settings.model_config.get("env_prefix") == "SCOREPIPE_"
    names = {f"SCOREPIPE_{field.upper()}" for field in Settings.model_fields}
    documented = documented_variables()
    assert len(documented) >= 20  # the premise: the pages were read
    unknown = {name: where for name, where in documented.items() if name not in names}
    assert not unknown, f"documented but read by no setting: {unknown}"
