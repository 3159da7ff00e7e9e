"""What the gate reads besides traffic: the rows each arm scored (the live window) and their late labels."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

import pandas as pd

from performance.labels import LABEL, read_labels
from scoring.errors import ScoringError
from scoring.layout import EVENT_ID, SHADOW_DIR
from scoring.scorer import MODEL_VERSION

log = logging.getLogger("scorepipe.gate")


def live_rows(live_dir: Path, *, since: datetime, versions: set[int]) -> pd.DataFrame:
    """Rows scored by ``versions`` in live-window files written since ``since`` (the shadow's left out).

    Rows a scorer still holds are not read: a window rolls when a batch arrives and its file is older than
    ``live_window_seconds`` (or holds ``live_window_rows``), so under traffic well inside an interval.
    """
    if not live_dir.exists():
        return pd.DataFrame()
    cutoff = since.timestamp()
    frames = []
    found = [(p.stat().st_mtime, p) for p in live_dir.rglob("*.parquet") if SHADOW_DIR not in p.parts]
    for modified, path in sorted(found):  # oldest first: of an event scored twice, the later row is kept
        if modified < cutoff:
            continue
        try:
            frame = pd.read_parquet(path)
        except (OSError, ValueError) as exc:  # a file being renamed into place; the next judgement reads it
            log.warning("gate: skipped %s (%s)", path, exc)
            continue
        frames.append(frame[frame[MODEL_VERSION].isin(versions)])
    if not frames:
        return pd.DataFrame()
    rows = pd.concat(frames, ignore_index=True)
    # Delivered at least once: an event scored twice counts once, its latest score kept.
    return rows.drop_duplicates(EVENT_ID, keep="last") if EVENT_ID in rows else rows


def labelled(rows: pd.DataFrame, labels_at: str, classes: list) -> pd.DataFrame:
    """``rows`` with their label joined on the event id (rows with no label left out)."""
    if rows.empty:
        return rows
    try:
        found = read_labels(labels_at, id_column=EVENT_ID, label_column=LABEL, classes=classes)
    except ScoringError as exc:
        log.info("gate: no labels read from %s (%s)", labels_at, exc)
        return rows.iloc[0:0]
    ids = rows[EVENT_ID].astype(str)
    joined = rows.assign(**{EVENT_ID: ids}).merge(
        found.labels.rename(columns={"id": EVENT_ID}), on=EVENT_ID, how="inner"
    )
    return joined
