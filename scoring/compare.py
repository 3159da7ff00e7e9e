"""Champion against challenger on what they already scored: batch outputs and stream live windows.

Shadow outputs live under a ``_shadow/`` folder beside the champion's (``data/scored/_shadow/...``,
``live/_shadow/...``). Rows are matched by ``event_id`` (stream) or by ``source_file`` and
``source_row`` (batch); a row scored twice (at-least-once delivery) counts once. The result is one
``Agreement`` per champion/challenger version pair.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import cast

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from scoring.agreement import Agreement
from scoring.errors import SourceError
from scoring.layout import BATCH_KEY, SHADOW_DIR, STREAM_KEY
from scoring.scorer import MODEL_VERSION, PREDICTION, PROBA_PREFIX
from scoring.sources import discover_inputs
from scoring.storage import Location, as_location


def find_shadow(scored: str | os.PathLike[str] | Location) -> Location:
    """The shadow twin of ``scored``: ``<root>/_shadow/<same relative path>`` for the nearest such root."""
    scored = as_location(scored)
    for root in [scored, *scored.parents]:
        twin = root / SHADOW_DIR / scored.relative_to(root)
        if (root / SHADOW_DIR).is_dir() and twin.exists():
            return twin
    raise SourceError(
        f"no shadow outputs for {scored}: expected a {SHADOW_DIR}/ folder beside it (score with --shadow)"
    )


def compare_outputs(scored: str | Path | Location, shadow: str | Path | Location | None = None) -> list[Agreement]:
    """Agreement of every champion/challenger pair found in ``scored`` and its shadow twin."""
    shadow = as_location(shadow) if shadow is not None else find_shadow(scored)
    champion = _read(as_location(scored))
    challenger = _read(shadow)
    key = _key(champion, challenger)
    champion = champion.drop_duplicates(list(key), keep="last")
    challenger = challenger.drop_duplicates(list(key), keep="last")
    joined = champion.merge(challenger, on=list(key), suffixes=("_champion", "_challenger"), validate="one_to_one")
    if joined.empty:
        raise SourceError(f"no row of {scored} has a shadow twin in {shadow} (matched on {', '.join(key)})")
    classes = [c[len(PROBA_PREFIX) :] for c in champion.columns if c.startswith(PROBA_PREFIX) and c in challenger]
    pairs = []
    for (left, right), group in joined.groupby([f"{MODEL_VERSION}_champion", f"{MODEL_VERSION}_challenger"]):
        a = group[[f"{PROBA_PREFIX}{c}_champion" for c in classes]].to_numpy(dtype=float)
        b = group[[f"{PROBA_PREFIX}{c}_challenger" for c in classes]].to_numpy(dtype=float)
        diff = np.abs(a - b)
        diff = diff[:, -1] if len(classes) == 2 else diff.max(axis=1)
        agreed = int(
            (
                group[f"{PREDICTION}_champion"].astype(str).to_numpy()
                == group[f"{PREDICTION}_challenger"].astype(str).to_numpy()
            ).sum()
        )
        agreement = Agreement(int(cast(int, left)), int(cast(int, right)))
        agreement.add_differences(diff, agreed=agreed)
        pairs.append(agreement)
    return pairs


def _read(path: Location) -> pd.DataFrame:
    """The id, prediction, probability and version columns of every scored file under ``path``."""
    files = discover_inputs(path).files
    frames = []
    for file in files:
        names = pq.read_schema(file.path, filesystem=file.fs).names
        wanted = [
            n for n in names if n in (*STREAM_KEY, *BATCH_KEY, PREDICTION, MODEL_VERSION) or n.startswith(PROBA_PREFIX)
        ]
        frames.append(pq.read_table(file.path, columns=wanted, filesystem=file.fs).to_pandas())
    return pd.concat(frames, ignore_index=True)


def _key(champion: pd.DataFrame, challenger: pd.DataFrame) -> tuple[str, ...]:
    for key in (STREAM_KEY, BATCH_KEY):
        if all(k in champion.columns and k in challenger.columns for k in key):
            return key
    raise SourceError("scored rows carry neither event_id nor source_file/source_row: cannot match them")
