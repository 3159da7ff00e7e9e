"""Reading delayed labels: an id column and a label column (and optionally when the label was known).

Bad label rows are set aside with a reason, never dropped silently: a missing id or label, a label
that is not one of the model's classes, and every copy of an id whose copies disagree. Exact repeats
of the same (id, label) are counted and kept once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from scoring import SourceError
from scoring.sources import discover_inputs
from scoring.storage import Where

LABEL = "label"
REASON = "reason"


@dataclass
class LabelSet:
    """Usable labels (one per id, as text ids and class labels) and the rows set aside with reasons."""

    labels: pd.DataFrame
    rejected: pd.DataFrame
    rows_read: int
    repeats_dropped: int = 0
    sources: list[str] = field(default_factory=list)


def read_labels(path: Where, *, id_column: str, label_column: str, classes: list[Any]) -> LabelSet:
    """All label files under ``path`` (a file, folder or glob of Parquet), checked against ``classes``."""
    files = discover_inputs(path).files
    frames = []
    for file in files:
        names = pq.read_schema(file.path, filesystem=file.fs).names
        missing = [c for c in (id_column, label_column) if c not in names]
        if missing:
            raise SourceError(f"label file {file} lacks {', '.join(missing)} (it has {', '.join(names)})")
        frames.append(pq.read_table(file.path, columns=[id_column, label_column], filesystem=file.fs).to_pandas())
    raw = pd.concat(frames, ignore_index=True).rename(columns={id_column: "id", label_column: LABEL})
    rows_read = len(raw)
    by_text = {str(_plain(c)): _plain(c) for c in classes}
    # One conversion per distinct label value (a handful), not per row.
    distinct_values = raw[LABEL].dropna().unique()
    text = raw[LABEL].map({v: _label_text(v) for v in distinct_values}, na_action="ignore")
    reasons = pd.Series(None, index=raw.index, dtype=object)
    reasons[raw["id"].isna()] = f"missing {id_column}"
    reasons[reasons.isna() & raw[LABEL].isna()] = f"missing {label_column}"
    unknown = reasons.isna() & ~text.isin(list(by_text))
    reasons[unknown] = [
        f"label {v!r} is not one of the model's classes {list(by_text.values())}" for v in raw.loc[unknown, LABEL]
    ]
    good = raw[reasons.isna()].assign(id=lambda f: f["id"].astype(str), **{LABEL: text[reasons.isna()].map(by_text)})
    distinct = good.drop_duplicates(["id", LABEL])
    repeats = len(good) - len(distinct)
    conflicting_ids = distinct["id"][distinct["id"].duplicated(keep=False)].unique()
    conflicts = raw.index.isin(good.index[good["id"].isin(conflicting_ids)])
    if conflicts.any():
        labels_of = distinct[distinct["id"].isin(conflicting_ids)].groupby("id")[LABEL].apply(sorted)
        ids = raw.loc[conflicts, "id"].astype(str)
        reasons[conflicts] = [f"conflicting labels for the same id: {labels_of[i]}" for i in ids]
    usable = distinct[~distinct["id"].isin(conflicting_ids)].reset_index(drop=True)
    rejected = raw[reasons.notna()].assign(**{REASON: reasons[reasons.notna()]})
    rejected = rejected.rename(columns={"id": id_column, LABEL: label_column}).reset_index(drop=True)
    return LabelSet(usable, rejected, rows_read, repeats, [str(f) for f in files])


def _label_text(value: Any) -> str:
    value = _plain(value)
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
