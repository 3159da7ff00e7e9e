"""MkDocs hook: the configuration reference, generated from the settings sections at build time.

``mkdocs.yml`` names this file under ``hooks:``. A page holding the marker ``<!-- settings-reference -->``
gets, in its place, one table per section (``scorepipe.settings.SECTIONS``: the package that owns it and
the fields it declares), each row a setting's environment variable(s), type, default and description.
So the reference cannot drift from the code. A secret's default is never printed.
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import AliasChoices, SecretStr
from pydantic.fields import FieldInfo

from scorepipe.settings import SECTIONS, Settings
from scoring.settings import Section

MARKER = "<!-- settings-reference -->"
NAMES = {str: "str", int: "int", float: "float", bool: "bool", Path: "path", SecretStr: "secret"}
BOUNDS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}  # annotated_types constraints, by attribute


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Replace the marker, on any page that has it, by the settings tables."""
    return markdown.replace(MARKER, settings_reference()) if MARKER in markdown else markdown


def settings_reference() -> str:
    """One heading and table per section, naming the class (and so the package) that owns it."""
    parts = []
    for title, section in SECTIONS:
        where = f"{section.__module__}.{section.__qualname__}"
        parts.append(f"### {title}\n\n`{where}`\n\n{settings_table(section, own_fields(section))}")
    return "\n\n".join(parts)


def own_fields(section: type[Section]) -> list[str]:
    """The fields ``section`` declares itself (not those of the sections it builds on)."""
    declared = section.__dict__.get("__annotations__", {})
    return [name for name in section.model_fields if name in declared]


def settings_table(settings: type[Section] = Settings, names: list[str] | None = None) -> str:
    """A markdown table with one row per field of ``settings`` (or only ``names``), in declaration order."""
    prefix = settings.model_config.get("env_prefix", "")
    rows = ["| variable | type | default | description |", "|---|---|---|---|"]
    for name, field in settings.model_fields.items():
        if names is not None and name not in names:
            continue
        variables = ", ".join(f"`{v}`" for v in variable_names(name, field, prefix))
        cells = [variables, type_text(field), default_text(field), escape(field.description or "")]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def variable_names(name: str, field: FieldInfo, prefix: str) -> list[str]:
    """The environment variables a field is read from: its alias(es) if it has any, else PREFIX + NAME."""
    alias = field.validation_alias or field.alias
    if isinstance(alias, str):
        return [alias.upper()]
    if isinstance(alias, AliasChoices):
        return [choice.upper() for choice in alias.choices if isinstance(choice, str)]
    return [f"{prefix}{name}".upper()]


def type_text(field: FieldInfo) -> str:
    """The field's type in a few words: ``int, > 0``, ``path``, ``one of `A`, `B```; ``None`` is left out."""
    annotation = field.annotation
    if get_origin(annotation) in (Union, types.UnionType):
        members = [a for a in get_args(annotation) if a is not type(None)]
        annotation = members[0] if len(members) == 1 else annotation
    if get_origin(annotation) is Literal:
        text = "one of " + ", ".join(f"`{value}`" for value in get_args(annotation))
    else:
        text = NAMES.get(annotation, getattr(annotation, "__name__", str(annotation)))  # type: ignore[arg-type]
    bounds = [
        f"{symbol} {getattr(m, attr)}"
        for m in field.metadata
        for attr, symbol in BOUNDS.items()
        if getattr(m, attr, None) is not None
    ]
    return escape(", ".join([text, *bounds]))


def is_secret(field: FieldInfo) -> bool:
    annotation = field.annotation
    return annotation is SecretStr or SecretStr in get_args(annotation)


def default_text(field: FieldInfo) -> str:
    """The default as it would be written in the variable; empty when unset; never a secret's value."""
    if field.is_required():
        return "(required)"
    if field.default_factory is not None:
        return "(computed)"
    value = field.default
    if value is None:
        return ""
    if is_secret(field) or isinstance(value, SecretStr):
        return "(secret)"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    return f"`{escape(str(value))}`" if str(value) else '`""`'


def escape(text: str) -> str:
    """A table cell's text: a pipe would end the cell, a line break the row."""
    return text.replace("|", "\\|").replace("\n", " ")
