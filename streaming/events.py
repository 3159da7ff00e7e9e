"""The stream's wire format: decoding JSON feature events, encoding predictions and dead letters.

An event is a JSON object with an ``event_id`` and exactly the model's feature fields. Decoding
checks only what JSON itself can get wrong (syntax, shape, field names, JSON types); the values
are checked by the scoring core, exactly as for batch rows.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from scoring import FeatureSchema

EVENT_ID = "event_id"

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


def decode_event(value: bytes | None, schema: FeatureSchema) -> Decoded:
    """Decode one message value; every problem found is named in ``error``."""
    if value is None:
        return Decoded(None, None, "empty message (no value)")
    try:
        payload = json.loads(value)
    except (UnicodeDecodeError, ValueError) as exc:
        return Decoded(None, None, f"invalid JSON: {exc}")
    if not isinstance(payload, dict):
        return Decoded(None, None, f"expected a JSON object, got {type(payload).__name__}")
    problems = []
    event_id = payload.pop(EVENT_ID, None)
    if not isinstance(event_id, str | int) or isinstance(event_id, bool) or event_id == "":
        problems.append(f"{EVENT_ID}: missing or not a string/integer")
        event_id = None
    missing = [name for name in schema.names if name not in payload]
    extra = sorted(name for name in payload if name not in schema.names)
    if missing:
        problems.append(f"missing fields: {', '.join(missing)}")
    if extra:
        problems.append(f"unexpected fields: {', '.join(extra)}")
    for spec in schema.features:
        value_ = payload.get(spec.name)
        if value_ is None:
            continue  # absent or null: absence is reported above, null is the core's call
        if spec.kind == "numeric" and (isinstance(value_, bool) or not isinstance(value_, int | float)):
            problems.append(f"{spec.name}: expected a number, got {_json_type(value_)} {_short(value_)}")
        elif spec.kind == "numeric" and not math.isfinite(value_):
            problems.append(f"{spec.name}: {value_} is not a JSON number (send null for a missing value)")
        elif spec.kind == "categorical" and not isinstance(value_, str):
            problems.append(f"{spec.name}: expected a string, got {_json_type(value_)} {_short(value_)}")
    if problems:
        return Decoded(None if event_id is None else str(event_id), None, "; ".join(problems))
    return Decoded(str(event_id), payload)


def encode_event(event_id: str, features: dict[str, Any]) -> bytes:
    """The JSON a producer sends for one event (NaN and inf are sent as JSON null)."""
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in features.items()}
    return json.dumps({EVENT_ID: event_id, **clean}, separators=(",", ":")).encode()


def encode_prediction(
    event_id: str,
    *,
    prediction: Any,
    probabilities: dict[str, float],
    confidence: float,
    model_version: int,
    event_time_ms: int,
    scored_at: str,
) -> bytes:
    """One prediction message body: label, per-class probabilities, version and both clocks."""
    body = {
        EVENT_ID: event_id,
        "prediction": _plain(prediction),
        "probabilities": probabilities,
        "confidence": confidence,
        "model_version": model_version,
        "event_time": iso_ms(event_time_ms),
        "scored_at": scored_at,
    }
    return json.dumps(body, separators=(",", ":")).encode()


def iso_ms(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).isoformat(timespec="milliseconds")


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _json_type(value: Any) -> str:
    return {str: "string", bool: "boolean", list: "array", dict: "object"}.get(type(value), type(value).__name__)


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."
