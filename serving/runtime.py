"""What the batcher calls: records and V2 tensors in, frames for ``Scorer.score``, results out.

Free of HTTP so it can be tested and reused: it raises scorepipe errors (``serving.errors``) that
only the app maps to statuses. Every prediction comes from ``Scorer.score`` on a frame, exactly as
in the batch flow and the stream; the batcher makes the call, for many requests at once.
"""

from __future__ import annotations

import math
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from monitoring.metrics import ScoringMetrics
from scoring import Scorer, ScoringError
from scoring.canary import CHAMPION
from scoring.canary_models import NO_SPLIT, CanaryModels, Split
from scoring.layout import EVENT_ID
from scoring.live_drift import LiveDrift
from scoring.live_window import LiveWindow
from scoring.records import RecordShape, json_type, short
from scoring.schema import FeatureSchema
from scoring.scorer import CONFIDENCE, PREDICTION, REJECT_REASON
from scoring.watcher import ModelWatcher
from serving.errors import ModelUnavailableError, RequestError, TooLargeError, UnknownModelError
from serving.settings import ServeSettings
from serving.shadow import HttpShadow

NUMERIC_DATATYPES = frozenset({"FP64", "FP32", "FP16", "INT64", "INT32", "INT16", "INT8", "UINT64", "UINT32"})
VERSION_CACHE = 4  # pinned versions asked for by path, kept loaded


RECORD_PATH_MAX = 8  # requests in one batcher run scored record by record; more are cheaper as one frame


@dataclass
class RecordResult:
    """One record's outcome: its scores, or why it could not be scored."""

    index: int
    scores: dict[str, Any] | None = None
    error: str | None = None


@dataclass
class PreparedRecords:
    """A JSON request's records before scoring: a result per record, and the frame of the good ones."""

    results: list[RecordResult]
    good: list[int]  # positions of the records in ``frame``, in order
    frame: pd.DataFrame | None
    records: list[dict[str, Any]] | None = None  # the good records themselves, row for row with ``frame``


class Runtime:
    """The serving side of one process: the followed champion, pinned versions, metrics."""

    def __init__(
        self,
        settings: ServeSettings,
        models: ModelWatcher,
        metrics: ScoringMetrics,
        canary: CanaryModels | None = None,
        window: LiveWindow | None = None,
        shadow: HttpShadow | None = None,
    ) -> None:
        self.settings = settings
        self.models = models
        self.canary = canary
        self.window = window
        self.shadow = shadow
        self.metrics = metrics
        self.registry = models.registry
        self.live_drift = settings.live_drift_window()
        self._pinned: OrderedDict[int, Scorer] = OrderedDict()
        self._shapes: dict[int, tuple[FeatureSchema, RecordShape]] = {}

    # -- models ------------------------------------------------------------------------------

    def scorer(self, version: str | None = None) -> Scorer:
        """The champion now (swapped in if its alias moved), or a specific version."""
        if version is None:
            scorer = self.models.current()
            if scorer is None:
                raise ModelUnavailableError("no model loaded")
            return scorer
        try:
            number = self.registry.resolve(version if not version.isdigit() else int(version))
        except ScoringError as exc:
            raise UnknownModelError(f"unknown model version {version!r}: {exc}") from exc
        current = self.models.current()
        if current is not None and current.version == number:
            return current
        if number not in self._pinned:
            try:
                self._pinned[number] = Scorer.from_registry(  # hash-verified
                    self.registry, number, options=self.settings.scorer_options
                )
            except ScoringError as exc:
                raise ModelUnavailableError(f"model version {number} cannot be loaded: {exc}") from exc
            while len(self._pinned) > VERSION_CACHE:
                self._pinned.popitem(last=False)
        self._pinned.move_to_end(number)
        return self._pinned[number]

    def split(self) -> Split:
        """The canary split for the next scoring run (none unless the champion alias is served)."""
        split = self.canary.split() if self.canary is not None else NO_SPLIT
        self.metrics.show_canary_weight(split.canary.version if split.canary is not None else None, split.weight)
        return split

    def canary_failed(self, canary: Scorer, error: BaseException, rows: int) -> None:
        """The canary failed to score: counted, and taken off traffic in this worker (the champion answers)."""
        self.metrics.arm_events.labels("canary", str(canary.version), "error").inc(rows)
        if self.canary is not None:
            self.canary.refuse(canary.version, f"{type(error).__name__}: {error}")

    def idle(self) -> None:
        """Nothing to score: live-window rows older than their age limit are written (a quiet server's too)."""
        if self.window is not None:
            self.window.roll_if_due()

    def versions(self) -> list[str]:
        return [str(v.version) for v in self.registry.versions()]

    # -- the simple JSON API -------------------------------------------------------------------

    def score_records(self, records: list[Any], scorer: Scorer, arm: str = CHAMPION) -> list[RecordResult]:
        """Score the well-formed records (a few one by one on the record path, more as one frame).

        The others come back with their reasons, in order. ``Scorer.score_one`` gives, key for key and
        type for type, what a one-row frame would (tested), in tens of microseconds instead of
        milliseconds: a lone request, the common case below saturation, skips every frame, and its
        rows reach the live windows as rows.
        """
        with self.metrics.arm_seconds.labels(arm, str(scorer.version)).time():
            one_by_one = scorer.record_path and len(records) <= RECORD_PATH_MAX
            prepared = self.records_frame(records, scorer, as_frame=not one_by_one)
            if one_by_one:
                assert prepared.records is not None
                scored_rows = [scorer.score_one(record) for record in prepared.records]
            else:
                scored = scorer.score(prepared.frame) if prepared.good else None
        if one_by_one:
            return self.rows_results(prepared, scorer, scored_rows, arm)
        return self.records_results(prepared, scorer, scored, arm)

    def rows_results(
        self, prepared: PreparedRecords, scorer: Scorer, scored: list[dict[str, Any]], arm: str = CHAMPION
    ) -> list[RecordResult]:
        """``records_results`` for records scored one by one (``scored``: ``score_one``'s rows), without a frame."""
        results = prepared.results
        kept: list[int] = []  # positions in ``scored`` of the rows that got scores
        classes = [(str(c), column) for c, column in zip(scorer.bundle.classes, scorer.proba_columns, strict=True)]
        for position, (i, row) in enumerate(zip(prepared.good, scored, strict=True)):
            if isinstance(reason := row[REJECT_REASON], str):
                results[i].error = reason
                continue
            results[i].scores = {
                "prediction": _plain(row[PREDICTION]),
                "probabilities": {name: float(row[column]) for name, column in classes},
                "confidence": float(row[CONFIDENCE]),
                "model_version": scorer.version,
                "arm": arm,
            }
            kept.append(position)
        if kept and (drift := self._drift_window(scorer, arm)) is not None:
            drift.observe_rows(scorer, [scored[k] for k in kept])
        ids = [""] * len(scored)  # each scored row's prediction id ("" where the row was refused)
        if self.window is not None and kept:
            names = [*scorer.bundle.schema.names, *(c for c in scorer.output_columns if c != REJECT_REASON)]
            window_rows = []
            for k in kept:
                ids[k] = uuid.uuid4().hex
                results[prepared.good[k]].scores["prediction_id"] = ids[k]  # type: ignore[index]
                window_rows.append({EVENT_ID: ids[k], **{name: scored[k][name] for name in names}})
            self.window.append_rows(window_rows)
        if self.shadow is not None and arm == CHAMPION and scored:
            columns = [REJECT_REASON, PREDICTION, *scorer.proba_columns]
            frame = pd.DataFrame({c: [row[c] for row in scored] for c in columns})
            self.shadow.offer(scorer, prepared.records or [], frame, ids if self.window is not None else None)
        self._count_scores(scorer, results, arm)
        return results

    def records_frame(self, records: list[Any], scorer: Scorer, *, as_frame: bool = True) -> PreparedRecords:
        """The well-formed records as one frame, and a result per record (with its reason if it is not)."""
        shape = self._shape(scorer)
        results = [RecordResult(i) for i in range(len(records))]
        good: list[int] = []
        for i, record in enumerate(records):
            if not isinstance(record, dict):
                results[i].error = f"expected a JSON object, got {json_type(record)} {short(record)}"
            elif not shape.fits(record) and (problems := shape.problems(record)):
                results[i].error = "; ".join(problems)
            else:
                good.append(i)
        kept = [records[i] for i in good]
        frame = pd.DataFrame.from_records(kept, columns=list(shape.names)) if good and as_frame else None
        return PreparedRecords(results, good, frame, kept)

    def records_results(
        self, prepared: PreparedRecords, scorer: Scorer, scored: pd.DataFrame | None, arm: str = CHAMPION
    ) -> list[RecordResult]:
        """Each record's scores (or the reason validation gave) from the scored frame of its good records."""
        results = prepared.results
        kept: list[int] = []  # rows of ``scored`` that got scores
        if prepared.good and scored is not None:
            reasons = scored[REJECT_REASON].to_numpy()
            proba = scored[scorer.proba_columns].to_numpy()
            labels = scored[PREDICTION].to_numpy(dtype=object)
            confidence = scored[CONFIDENCE].to_numpy()
            classes = [str(c) for c in scorer.bundle.classes]
            for row, i in enumerate(prepared.good):
                if isinstance(reasons[row], str):
                    results[i].error = reasons[row]
                    continue
                results[i].scores = {
                    "prediction": _plain(labels[row]),
                    "probabilities": dict(zip(classes, proba[row].tolist(), strict=True)),
                    "confidence": float(confidence[row]),
                    "model_version": scorer.version,
                    "arm": arm,
                }
                kept.append(row)
            if kept and (drift := self._drift_window(scorer, arm)) is not None:
                drift.observe(scorer, scored.iloc[kept] if len(kept) < len(scored) else scored)
            ids = [""] * len(scored)  # each scored row's prediction id ("" where the row was refused)
            if self.window is not None and kept:
                for row in kept:
                    ids[row] = uuid.uuid4().hex
                    results[prepared.good[row]].scores["prediction_id"] = ids[row]  # type: ignore[index]
                self._remember(scored.iloc[kept] if len(kept) < len(scored) else scored, [ids[r] for r in kept])
            features = prepared.records if prepared.records is not None else prepared.frame
            if self.shadow is not None and arm == CHAMPION and features is not None:
                self.shadow.offer(scorer, features, scored, ids if self.window is not None else None)
        self._count_scores(scorer, results, arm)
        return results

    def _count_scores(self, scorer: Scorer, results: list[RecordResult], arm: str) -> None:
        ok = [r.scores for r in results if r.scores is not None]
        self._count(
            scorer,
            np.asarray([s["prediction"] for s in ok], dtype=object),
            np.asarray([s["confidence"] for s in ok], dtype=float),
            rejected=len(results) - len(ok),
            arm=arm,
        )

    # -- Open Inference Protocol V2 ------------------------------------------------------------

    def infer_frame(self, inputs: list[dict[str, Any]], scorer: Scorer) -> pd.DataFrame:
        """The V2 request's columns as one frame; ``RequestError`` listing every problem if it cannot be scored."""
        schema = scorer.bundle.schema
        problems: list[str] = []
        by_name = {}
        for position, tensor in enumerate(inputs):
            name = tensor.get("name")
            if name in by_name:
                problems.append(f"input {name!r} is given twice")
            by_name[name] = (position, tensor)
        missing = [n for n in schema.names if n not in by_name]
        unknown = [str(n) for n in by_name if n not in schema.names]
        if missing:
            problems.append(f"missing inputs: {', '.join(missing)}")
        if unknown:
            problems.append(f"unknown inputs: {', '.join(unknown)} (the model takes {', '.join(schema.names)})")
        columns: dict[str, Any] = {}
        lengths: dict[str, int] = {}
        for feature in schema.features:
            if feature.name not in by_name:
                continue
            _, tensor = by_name[feature.name]
            column, column_problems = _column(tensor, numeric=feature.kind == "numeric")
            problems += column_problems
            if column is not None:
                columns[feature.name] = column
                lengths[feature.name] = len(column)
        if len(set(lengths.values())) > 1:
            problems.append(f"inputs differ in length: {', '.join(f'{n}={k}' for n, k in lengths.items())}")
        if not problems and not lengths:
            problems.append("no inputs")
        if not problems and next(iter(lengths.values())) == 0:
            problems.append("inputs hold no rows")
        if not problems and next(iter(lengths.values())) > self.settings.serve_max_batch_records:
            raise TooLargeError(f"{next(iter(lengths.values()))} rows is more than the limit of "
                                f"{self.settings.serve_max_batch_records} per request")  # fmt: skip
        if problems:
            raise RequestError("the request cannot be scored", problems)
        return pd.DataFrame(columns, columns=schema.names)

    def infer(self, frame: pd.DataFrame, scorer: Scorer) -> pd.DataFrame:
        """Score the frame alone (the batcher scores many at once and calls ``infer_result``)."""
        return self.infer_result(frame, scorer, scorer.score(frame))

    def infer_result(
        self, frame: pd.DataFrame, scorer: Scorer, scored: pd.DataFrame, arm: str = CHAMPION
    ) -> pd.DataFrame:
        """The scored frame of a V2 request; every row must be scorable (``RequestError`` naming each otherwise)."""
        reasons = scored[REJECT_REASON]
        bad = reasons.notna().to_numpy()
        good = scored[~bad]
        self._count(
            scorer, good[PREDICTION].to_numpy(dtype=object), good[CONFIDENCE].to_numpy(float), int(bad.sum()), arm=arm
        )
        if bad.any():
            problems = [f"row {i}: {reasons.iloc[i]}" for i in np.flatnonzero(bad)]
            raise RequestError(f"{int(bad.sum())} of {len(frame)} rows cannot be scored", problems)
        if (drift := self._drift_window(scorer, arm)) is not None:
            drift.observe(scorer, scored)
        ids = [uuid.uuid4().hex for _ in range(len(scored))] if self.window is not None else None
        if ids is not None:
            self._remember(scored, ids)
        if self.shadow is not None and arm == CHAMPION:
            self.shadow.offer(scorer, frame, scored, ids)
        return scored

    def _remember(self, scored: pd.DataFrame, ids: list[str]) -> None:
        """Scored rows into the live window, each with its prediction id (what ``/feedback`` labels)."""
        assert self.window is not None
        columns: dict[str, Any] = {EVENT_ID: np.asarray(ids, dtype=object)}
        columns.update({c: scored[c] for c in scored.columns if c != REJECT_REASON})
        self.window.append(columns)

    # -- internals ---------------------------------------------------------------------------

    def _shape(self, scorer: Scorer) -> RecordShape:
        """The record shape of the scorer's schema, made once per schema rather than per request."""
        schema = scorer.bundle.schema
        cached = self._shapes.get(id(schema))
        if cached is None or cached[0] is not schema:
            cached = self._shapes[id(schema)] = (schema, RecordShape(schema))
            while len(self._shapes) > VERSION_CACHE + 2:  # the champion, a canary and pinned versions
                self._shapes.pop(next(iter(self._shapes)))
        return cached[1]

    def _drift_window(self, scorer: Scorer, arm: str) -> LiveDrift | None:
        """The live drift window, if rows scored by ``scorer`` belong in it: the followed champion's only.

        A canary's rows, and requests for a pinned version, are another model's: they would restart
        the window against that model's reference.
        """
        counts = arm == CHAMPION and scorer.version == self.models.version
        return self.live_drift if counts else None

    def _count(
        self, scorer: Scorer, labels: np.ndarray, confidence: np.ndarray, rejected: int, *, arm: str = CHAMPION
    ) -> None:
        if len(labels):
            self.metrics.record_predictions(scorer.version, labels, confidence)
            self.metrics.arm_events.labels(arm, str(scorer.version), "predicted").inc(len(labels))
        if rejected:
            self.metrics.rejected.labels("validate").inc(rejected)
            self.metrics.arm_events.labels(arm, str(scorer.version), "rejected").inc(rejected)


def _column(tensor: dict[str, Any], *, numeric: bool) -> tuple[list[Any] | None, list[str]]:
    """One V2 input's data as a flat list of JSON scalars, with every problem of its shape and types."""
    name = tensor.get("name")
    datatype = tensor.get("datatype")
    data = tensor.get("data")
    shape = tensor.get("shape")
    problems = []
    if numeric and datatype not in NUMERIC_DATATYPES:
        problems.append(f"input {name!r}: datatype {datatype!r}, expected FP64 (or another numeric type)")
    if not numeric and datatype != "BYTES":
        problems.append(f"input {name!r}: datatype {datatype!r}, expected BYTES")
    if not isinstance(data, list):
        return None, [*problems, f"input {name!r}: data must be a list"]
    flat = [v for row in data for v in (row if isinstance(row, list) else [row])]
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        problems.append(f"input {name!r}: shape must be a list of sizes, got {short(shape)}")
    elif math.prod(shape) != len(flat) or len(shape) > 2 or (len(shape) == 2 and shape[1] != 1):
        problems.append(f"input {name!r}: shape {shape} does not fit {len(flat)} values of one column ([n] or [n, 1])")
    wrong = [
        (i, v)
        for i, v in enumerate(flat)
        if v is not None
        and (not isinstance(v, int | float) or isinstance(v, bool) if numeric else not isinstance(v, str))
    ]
    for i, value in wrong[:5]:
        kind = "a number" if numeric else "a string"
        problems.append(f"input {name!r}: element {i} is {json_type(value)} {short(value)}, expected {kind}")
    if len(wrong) > 5:
        problems.append(f"input {name!r}: {len(wrong) - 5} more elements of the wrong type")
    return (None if problems else flat), problems


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
