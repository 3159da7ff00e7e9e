"""Evidently's HTML, saved self-contained and headed by what it compares: shared by every report."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

from scoring import ScoringError
from scoring.storage import Location

EXTERNAL_ASSET = re.compile(r"<(script|link)[^>]+(src|href)=[\"']?(https?:)?//", re.IGNORECASE)


class ReportError(ScoringError):
    """Raised by reporting when Evidently cannot judge a column or the HTML is not self-contained."""


def save_html(snapshot: Any, path: Location, *, title: str | None = None, details: Sequence[str] = ()) -> None:
    """Save an Evidently snapshot atomically, refusing HTML that would load anything from the network.

    ``title`` and ``details`` head the page (and ``title`` names the browser tab): Evidently's page
    says neither which model nor which rows it compares, and a reviewer opening it from a link must see both.
    """
    with tempfile.TemporaryDirectory(prefix="scorepipe-report-") as folder:
        rendered = Path(folder) / "report.html"
        snapshot.save_html(str(rendered))  # Evidently writes to a local file; it goes to ``path`` once checked
        text = rendered.read_text(encoding="utf-8")
    found = EXTERNAL_ASSET.search(text)
    if found:
        raise ReportError(f"the report would load {found.group(0)!r} from the network; refusing to save it")
    if title is not None:
        text = with_heading(text, title, details)
    path.write_bytes(text.encode("utf-8"))


def with_heading(page: str, title: str, details: Sequence[str]) -> str:
    """``page`` with a ``<title>`` and a header section naming what the report compares (text escaped).

    >>> with_heading("<html><head></head><body><div></div></body></html>", "a < b", ["v1"])[:70]
    '<html><head><title>a &lt; b</title></head><body><header style="font-fa'
    """
    lines = "".join(f"<li>{escape(d)}</li>" for d in details)
    header = (
        '<header style="font-family: sans-serif; margin: 16px 24px;">'
        f'<h1 style="font-size: 20px; margin: 0 0 8px;">{escape(title)}</h1>'
        f'<ul style="margin: 0; padding-left: 20px; color: #444;">{lines}</ul></header>'
    )
    page = re.sub(r"<head>", lambda m: f"{m.group(0)}<title>{escape(title)}</title>", page, count=1)
    return re.sub(r"<body[^>]*>", lambda m: m.group(0) + header, page, count=1)
