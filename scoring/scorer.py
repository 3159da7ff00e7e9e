"""The Scorer: the only place in scorepipe where a prediction is made.

Batch partitions and stream micro-batches both become a frame and go through ``Scorer.score``,
so the same row gets the same score on both paths.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from scoring import compiled, fastpath
from scoring.bundle import ModelBundle
from scoring.layout import CONFIDENCE, MODEL_VERSION, PREDICTION, PROBA_PREFIX, REJECT_REASON, SCORED_AT
from scoring.registry import LoadedModel, Registry
from scoring.validation import ExtraColumns, validate

__all__ = [
    "CONFIDENCE",
    "MODEL_VERSION",
    "PREDICTION",
    "PROBA_PREFIX",
    "REJECT_REASON",
    "SCORED_AT",
    "Scorer",
    "ScorerOptions",
]


@dataclass(frozen=True)
class ScorerOptions:
    """Which verified fast paths a scorer may take; each is used only where it matches scikit-learn exactly."""

    small_frame_shortcut: bool = True  # frames of up to fastpath.MAX_ROWS rows: sklearn's trees in one call
    compiled_trees: bool = True  # larger frames: the bundle's compiled trees (scoring.compiled)
    # OpenMP threads the compiled trees run (and are verified) on; None: as many as scikit-learn would use
    # here. A long-running scorer that limits OpenMP itself says so, since it loads models on other threads.
    threads: int | None = None


# Up to this many rows the small-frame shortcut is faster than the compiled trees, whose call has a
# fixed cost of about 0.25 ms (measured, 1 thread: 87 vs 265 us at 1 row, 232 vs 278 at 10, 566 vs 333
# at 27, 1,489 vs 532 at 100). A stream at 1,000 events/s scores batches of a few dozen.
COMPILED_FROM_ROWS = 16

ALL_VERIFIED = ScorerOptions()  # every fast path, each where it verifies


def _utc_now() -> pd.Timestamp:
    return pd.Timestamp(datetime.now(UTC))


class Scorer:
    """Scores frames with one model version: validation, ``predict_proba``, version stamp.

    ``score`` returns one output row per input row, in the input's order and index: the input's
    columns (features cast to the schema's types), then ``prediction``, one ``proba_<class>``
    per class, ``confidence``, ``model_version``, ``scored_at`` and ``reject_reason``, which is
    None for scored rows and says why for rejected ones (whose prediction columns are null).
    The input's own columns are carried without a copy: treat the result as read-only, or copy it.
    """

    def __init__(
        self,
        bundle: ModelBundle,
        version: int,
        *,
        clock: Callable[[], pd.Timestamp] = _utc_now,
        options: ScorerOptions = ALL_VERIFIED,
    ) -> None:
        self.bundle = bundle
        self.version = version
        self._clock = clock
        self.proba_columns = [f"{PROBA_PREFIX}{c}" for c in bundle.classes]
        self._classes = np.asarray(bundle.classes)
        self._integer_classes = np.issubdtype(self._classes.dtype, np.integer)
        self._schema_kinds = {spec.name: spec.kind == "numeric" for spec in bundle.schema.features}
        self._output_names = frozenset(self.output_columns)
        # Small frames (a request, a quiet stream's poll) skip sklearn's per-call overhead when a
        # shortcut reproduces this pipeline exactly; large frames always go through sklearn.
        # The shortcut reads fitted-tree internals of scikit-learn; ``ScorerOptions`` turns it off.
        self._small_frames = (
            fastpath.SmallFramePredictor.verified(bundle.pipeline, bundle.schema, bundle.reference)
            if options.small_frame_shortcut
            else None
        )
        # Larger frames go through the bundle's compiled trees when they reproduce predict_proba exactly.
        self._compiled, self.compiled_trees_reason = (
            compiled.CompiledTrees.verified(bundle, threads=options.threads)
            if options.compiled_trees
            else (None, "off by setting")
        )

    @classmethod
    def from_registry(
        cls, registry: Registry, ref: str | int = "champion", *, options: ScorerOptions = ALL_VERIFIED
    ) -> Scorer:
        return cls.from_loaded(registry.load(ref), options=options)

    @classmethod
    def from_loaded(cls, loaded: LoadedModel, *, options: ScorerOptions = ALL_VERIFIED) -> Scorer:
        return cls(loaded.bundle, loaded.version, options=options)

    @property
    def small_frame_shortcut(self) -> bool:
        """Whether small frames are scored by the verified shortcut (off by setting, or when none fits the model)."""
        return self._small_frames is not None

    @property
    def record_path(self) -> bool:
        """Whether ``score_one`` sends clean records straight into the compiled trees (verified at load)."""
        return self._compiled is not None and self._compiled.records is not None

    @property
    def compiled_trees(self) -> bool:
        """Whether larger frames are scored by the bundle's compiled trees (``compiled_trees_reason`` says why not)."""
        return self._compiled is not None

    @property
    def output_columns(self) -> list[str]:
        """Columns ``score`` adds after the input's own."""
        return [PREDICTION, *self.proba_columns, CONFIDENCE, MODEL_VERSION, SCORED_AT, REJECT_REASON]

    def score(self, frame: pd.DataFrame | pa.Table, *, extra: ExtraColumns = "allow") -> pd.DataFrame:
        """Validate and score ``frame``; raise ``SchemaError`` if it cannot be scored at all."""
        if isinstance(frame, pa.Table):
            frame = frame.to_pandas()
        validated = validate(frame, self.bundle.schema, extra=extra)
        valid = validated.valid
        n = len(frame)
        proba = np.full((n, len(self._classes)), np.nan)
        if valid.any():
            features = validated.features if valid.all() else validated.features[valid]
            proba[valid] = self._predict_proba(features)
        best = np.argmax(np.nan_to_num(proba, nan=-1.0), axis=1)
        if self._integer_classes:
            prediction: Any = pd.array(self._classes[best], dtype="Int64")
            prediction[~valid] = pd.NA
        else:
            prediction = np.where(valid, self._classes[best].astype(object), None)
        added: dict[str, Any] = {PREDICTION: prediction}
        for i, column in enumerate(self.proba_columns):
            added[column] = proba[:, i]
        added[CONFIDENCE] = np.where(valid, proba.max(axis=1, initial=-np.inf), np.nan)
        added[MODEL_VERSION] = np.full(n, self.version, dtype=np.int64)
        added[SCORED_AT] = pd.Series(self._clock(), index=frame.index)
        added[REJECT_REASON] = validated.reasons.to_numpy()
        # One frame built from one dict of columns: the input's own (features replaced in place by
        # their cast values), then the added ones. Cheaper than drop + assign + concat on small frames.
        replaced = set(self.output_columns)
        columns: dict[str, Any] = {c: frame[c] for c in frame.columns if c not in replaced}
        columns.update({name: validated.features[name] for name in self.bundle.schema.names})
        columns.update(added)
        # copy=False: no second copy of every column into pandas' blocks (0.4 s per million rows).
        return pd.DataFrame(columns, index=frame.index, copy=False)

    def _predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        """The fastest verified route for the frame's size: compiled trees past a few rows, else the shortcut."""
        rows = len(features)
        if self._compiled is not None and rows > COMPILED_FROM_ROWS:
            return self._compiled.predict_proba(features)
        if self._small_frames is not None and rows <= fastpath.MAX_ROWS:
            return self._small_frames.predict_proba(features)
        if self._compiled is not None:
            return self._compiled.predict_proba(features)
        return self.bundle.pipeline.predict_proba(features)

    def score_batches(self, frames: Iterable[pd.DataFrame | pa.Table]) -> Iterator[pd.DataFrame]:
        """Score a stream of chunks one at a time, so memory is bounded by the chunk size."""
        for frame in frames:
            yield self.score(frame)

    def score_one(self, record: dict[str, Any]) -> dict[str, Any]:
        """Score one record: what ``score`` gives for a one-row frame of it, key for key and type for type.

        A clean record (see ``scoring.record_path``) goes straight into the verified compiled trees
        (tens of microseconds); any other goes through ``score``, which says why it is rejected.
        """
        if (fast := self._one_record(record)) is not None:
            return fast
        row = self.score(pd.DataFrame([record])).iloc[0]
        return {str(key): value for key, value in row.items()}

    def _one_record(self, record: dict[str, Any]) -> dict[str, Any] | None:
        path = self._compiled.records if self._compiled is not None else None
        if path is None or not self._plain_extras(record) or (proba := path.proba(record)) is None:
            return None
        out: dict[str, Any] = {}
        for key, value in record.items():
            if key in self._schema_kinds:
                numeric = self._schema_kinds[key]
                out[key] = np.float64(np.nan if value is None else value) if numeric else value
            else:
                out[key] = _as_pandas_scalar(value)
        best = int(np.argmax(proba))
        label = self._classes[best]
        out[PREDICTION] = (
            np.int64(label) if self._integer_classes else label.item() if hasattr(label, "item") else label
        )
        for i, column in enumerate(self.proba_columns):
            out[column] = np.float64(proba[i])
        out[CONFIDENCE] = np.float64(proba.max())
        out[MODEL_VERSION] = np.int64(self.version)
        out[SCORED_AT] = self._clock()
        out[REJECT_REASON] = None
        return out

    def _plain_extras(self, record: dict[str, Any]) -> bool:
        """Whether every key is a string and no extra value needs pandas to say what it becomes."""
        for key, value in record.items():
            if type(key) is not str or key in self._output_names:
                return False
            if key in self._schema_kinds or value is None or type(value) in _PLAIN:
                continue
            if type(value) is not int or value not in _INT64:
                return False
        return True


_PLAIN = (str, float, bool)  # extra values a one-row frame keeps as the same (numpy) scalar
_INT64 = range(-(2**63), 2**63)


def _as_pandas_scalar(value: Any) -> Any:
    """What a one-row frame's column makes of a plain extra value: numpy scalars for numbers and booleans."""
    kind = type(value)
    if kind is int:
        return np.int64(value)
    if kind is float:
        return np.float64(value)
    if kind is bool:
        return np.bool_(value)
    return value


def split_rejected(scored: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split a ``Scorer.score`` result into (scored rows, rejected rows)."""
    rejected = scored[REJECT_REASON].notna().to_numpy()
    if not rejected.any():
        return scored, scored.iloc[0:0]
    return scored[~rejected], scored[rejected]
