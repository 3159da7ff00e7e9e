"""Demo event producer: synthetic transactions as JSON events, at a rate, some malformed on purpose."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from scoring import SinkError, synthetic
from scoring.layout import EVENT_ID
from streaming.events import encode_event, json_safe
from streaming.settings import StreamSettings
from streaming.transport import transport_for
from streaming.transport.base import TransportError

# Each kind of malformed event the demo sends, and how it spoils a good one.
MALFORMED: dict[str, Callable[[dict], bytes]] = {
    "invalid_json": lambda e: json.dumps(e).encode()[:-7],
    "missing_field": lambda e: json.dumps({k: v for k, v in e.items() if k != "amount"}).encode(),
    "extra_field": lambda e: json.dumps({**e, "coupon_code": "SPRING"}).encode(),
    "wrong_type": lambda e: json.dumps({**e, "amount": "twelve"}).encode(),
    "nan_value": lambda e: json.dumps({**e, "customer_age": float("nan")}).encode(),  # the NaN literal
    "unknown_category": lambda e: json.dumps({**e, "channel": "carrier_pigeon"}).encode(),
}


@dataclass
class ProduceStats:
    sent: int = 0
    malformed: int = 0
    seconds: float = 0.0


def events(
    count: int, *, seed: int, drifted: bool = False, malformed_share: float = 0.0
) -> Iterator[tuple[bytes, bytes, str | None]]:
    """Yield (key, value, malformed kind or None) for ``count`` synthetic events."""
    rng = np.random.default_rng(seed + 1)
    kinds = list(MALFORMED)
    produced = 0
    for block in synthetic.iter_blocks(count, seed=seed, drifted=drifted, with_target=False, block_rows=10_000):
        ids = block.pop(synthetic.ID_COLUMN).tolist()
        records: list[dict[str, Any]] = block.to_dict(orient="records")  # type: ignore[assignment]
        for event_id, record in zip(ids, records, strict=True):
            key = event_id.encode()
            if malformed_share and rng.random() < malformed_share:
                kind = kinds[produced % len(kinds)]
                yield key, MALFORMED[kind]({EVENT_ID: event_id, **json_safe(record)}), kind
            else:
                yield key, encode_event(event_id, record), None
            produced += 1


def produce(
    settings: StreamSettings,
    *,
    count: int,
    rate: float = 0.0,
    seed: int = 7,
    drifted: bool = False,
    malformed_share: float = 0.0,
    topic: str | None = None,
    on_progress: Callable[[int], None] | None = None,
    stopping: threading.Event | None = None,
) -> ProduceStats:
    """Send ``count`` events to the features topic, at ``rate`` events/s (0 = as fast as possible).

    ``stopping``, when set, ends it early (live traffic fed for as long as a caller needs it).
    """
    producer = transport_for(settings).producer(settings, linger_ms=10)
    stats = ProduceStats()
    started = time.monotonic()
    try:
        for key, value, kind in events(count, seed=seed, drifted=drifted, malformed_share=malformed_share):
            if stopping is not None and stopping.is_set():
                break
            producer.send(topic or settings.features_topic, key=key, value=value)
            stats.sent += 1
            stats.malformed += kind is not None
            if rate > 0:
                ahead = stats.sent / rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
            if on_progress is not None and stats.sent % 1000 == 0:
                on_progress(1000)
        producer.flush(timeout=60)
    except TransportError as exc:
        raise SinkError(f"producing to {settings.kafka_bootstrap_servers} failed: {exc}") from exc
    finally:
        producer.close(timeout=10)
    stats.seconds = time.monotonic() - started
    return stats
