"""The reference side of drift reports, and the model version a window was scored by.

Reference: the bundle's reference rows (their features' profile stored at registration) and the
model's own outputs on them, computed once per version and cached (keyed by the model's hash, so
two registries never share an entry). The current side is ``drift.current``.
"""

from __future__ import annotations

import os
import uuid
from collections import Counter
from pathlib import Path

import pandas as pd

from scoring import ModelBundle, Scorer
from scoring.bundle import MODEL_FILE
from scoring.drift_reference import reference_outputs
from scoring.registry import Registry
from scoring.scorer import MODEL_VERSION


def cached_reference_outputs(registry: Registry, version: int, bundle: ModelBundle, cache_dir: Path) -> pd.DataFrame:
    """The model's outputs on its reference rows, row for row, computed once per version."""
    digest = registry.info(version).files[MODEL_FILE][:12]
    path = cache_dir / f"reference-outputs-v{version}-{digest}.parquet"
    if path.exists():
        return pd.read_parquet(path)
    outputs = reference_outputs(Scorer(bundle, version))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    outputs.to_parquet(tmp, index=False)
    os.replace(tmp, path)
    return outputs


def dominant_version(frame: pd.DataFrame) -> int | None:
    """The model version that scored most of ``frame``, if the column is there."""
    if MODEL_VERSION not in frame.columns or frame.empty:
        return None
    return int(Counter(frame[MODEL_VERSION].tolist()).most_common(1)[0][0])
