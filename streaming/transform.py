"""One micro-batch from raw events to scored rows: decode, score as one frame, route every event.

Pure of any Kafka client: records are anything with ``value`` (bytes), ``topic``, ``partition``
and ``offset``. Every event ends up either scored (``kept``, row for row with ``accepted``) or
dead (with its reason and the stage that refused it): none is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from scoring import FeatureSchema, SchemaError, Scorer
from scoring.canary import CHAMPION
from scoring.scorer import REJECT_REASON
from streaming.events import Decoded, EventDecoder


@dataclass
class ScoredBatch:
    """A micro-batch after scoring: what was predicted, by which version, and what goes to dead letters."""

    scorer: Scorer
    records: list[Any]
    arm: str = CHAMPION  # which side of a canary split scored it
    frame: pd.DataFrame | None = None  # the decodable events' features, as scored
    accepted: pd.DataFrame | None = None  # scored rows that passed validation
    valid: Any = None  # per row of ``frame``: passed validation
    kept: list[tuple[Any, Decoded]] = field(default_factory=list)  # (record, event) per accepted row
    dead: list[tuple[Any, str, str]] = field(default_factory=list)  # (record, reason, stage)


class BatchTransform:
    """Decodes events for the serving model's features and scores them with ``Scorer.score``."""

    def __init__(self, schema: FeatureSchema) -> None:
        self._schema = schema
        self._decoder = EventDecoder(schema)

    def __call__(self, scorer: Scorer, records: list[Any], arm: str = CHAMPION) -> ScoredBatch:
        if scorer.bundle.schema != self._schema:  # a reload passed the compatibility check: same fields
            self._schema = scorer.bundle.schema
            self._decoder = EventDecoder(self._schema)
        batch = ScoredBatch(scorer, records, arm)
        decoded = [self._decoder.decode(r.value) for r in records]
        batch.dead = [(r, d.error, "decode") for r, d in zip(records, decoded, strict=True) if d.error]
        good = [(r, d) for r, d in zip(records, decoded, strict=True) if d.error is None]
        if not good:
            return batch
        features = [d.features or {} for _, d in good]  # decoded without error: features are set
        batch.frame = pd.DataFrame.from_records(features, columns=self._schema.names)
        scored = _score(scorer, batch.frame)
        reasons = scored[REJECT_REASON].to_numpy()
        batch.valid = pd.isna(reasons)
        batch.accepted = scored if batch.valid.all() else scored[batch.valid]
        batch.kept = [g for g, ok in zip(good, batch.valid, strict=True) if ok]
        batch.dead += [
            (r, reason, "validate") for (r, _), reason, ok in zip(good, reasons, batch.valid, strict=True) if not ok
        ]
        return batch


def _score(scorer: Scorer, frame: pd.DataFrame) -> pd.DataFrame:
    try:
        return scorer.score(frame)
    except SchemaError:
        # Decoding makes this rare; score one by one so a bad event cannot take its batch down.
        parts = []
        for i in range(len(frame)):
            try:
                parts.append(scorer.score(frame.iloc[i : i + 1]))
            except SchemaError as exc:
                parts.append(frame.iloc[i : i + 1].assign(**{REJECT_REASON: " ".join(exc.problems)}))
        return pd.concat(parts)
