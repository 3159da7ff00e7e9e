"""The stream's wire format: decoding JSON feature events, encoding predictions and dead letters.

An event is a JSON object with an ``event_id`` and exactly the model's feature fields. Decoding
checks only what JSON itself can get wrong (syntax, shape, field names, JSON types); the values
are checked by the scoring core, exactly as for batch rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from scoring import FeatureSchema
from scoring.layout import EVENT_ID
from scoring.records import RecordShape

# Dead-letter headers, named after Kafka Connect's ``__connect.errors.*`` headers.
DLQ_REASON = "scorepipe.errors.reason"
DLQ_TOPIC = "scorepipe.errors.topic"
DLQ_PARTITION = "scorepipe.errors.partition"
DLQ_OFFSET = "scorepipe.errors.offset"
DLQ_STAGE = "scorepipe.errors.stage"


@dataclass(frozen=True)
class Decoded:
    """A decoded event: its id and feature values, or the reason it cannot be decoded."""

    event_id: str | None
    features: dict[str, Any] | None
    error: str | None = None


class EventDecoder:
    """Decodes events for one schema (the field checks are ``scoring.records.RecordShape``'s)."""

    def __init__(self, schema: FeatureSchema) -> None:
        self.shape = RecordShape(schema)
        self.names = self.shape.names

    def decode(self, value: bytes | None) -> Decoded:
        """Decode one message value; every problem found is named in ``error``."""
        if value is None:
            return Decoded(None, None, "empty message (no value)")
        try:
            payload = orjson.loads(value)  # strict JSON: NaN and Infinity literals are refused here
        except orjson.JSONDecodeError as exc:
            return Decoded(None, None, f"invalid JSON: {exc}")
        if not isinstance(payload, dict):
            return Decoded(None, None, f"expected a JSON object, got {type(payload).__name__}")
        event_id = payload.pop(EVENT_ID, None)
        if isinstance(event_id, str) and event_id and self.shape.fits(payload):
            return Decoded(event_id, payload)  # the common case, checked with the least work
        problems = []
        if not isinstance(event_id, str | int) or isinstance(event_id, bool) or event_id == "":
            problems.append(f"{EVENT_ID}: missing or not a string/integer")
            event_id = None
        problems += self.shape.problems(payload)
        if problems:
            return Decoded(None if event_id is None else str(event_id), None, "; ".join(problems))
        return Decoded(str(event_id), payload)


def decode_event(value: bytes | None, schema: FeatureSchema) -> Decoded:
    """Decode one message value against ``schema`` (see ``EventDecoder`` to decode many)."""
    return EventDecoder(schema).decode(value)


def json_safe(record: dict[str, Any]) -> dict[str, Any]:
    """NaN and inf become null: they are not JSON numbers, and null is how JSON says missing."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}


def encode_event(event_id: str, features: dict[str, Any]) -> bytes:
    """The JSON a producer sends for one event."""
    return orjson.dumps({EVENT_ID: event_id, **json_safe(features)})


def encode_prediction(
    event_id: str,
    *,
    prediction: Any,
    probabilities: dict[str, float],
    confidence: float,
    model_version: int,
    event_time: str,
    scored_at: str,
    arm: str = "champion",
) -> bytes:
    """One prediction message body: label, per-class probabilities, version, arm and both clocks."""
    body = {
        EVENT_ID: event_id,
        "prediction": _plain(prediction),
        "probabilities": probabilities,
        "confidence": confidence,
        "model_version": model_version,
        "arm": arm,
        "event_time": event_time,
        "scored_at": scored_at,
    }
    return orjson.dumps(body)


def iso_ms(epoch_ms: list[int]) -> list[str]:
    """Kafka timestamps (ms since the epoch) as ISO 8601 UTC strings, vectorized."""
    return np.datetime_as_string(np.asarray(epoch_ms, dtype="datetime64[ms]"), unit="ms", timezone="UTC").tolist()


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
