"""Payload logging: one scoring exchange as the server saw it, and the interface of where it goes.

The server's middleware captures the bytes of a scoring request and of its answer and offers them,
once the answer is sent, to a ``PayloadLog``. The server knows no broker: the entry point composes
the Kafka one (``streaming.payload_log``). Both sides meet here, below them, so serving and the
stream stay independent of each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Exchange:
    """One scoring request and its answer, as sent (bodies are raw bytes: encoding is the log's job)."""

    request_id: str
    time: str  # ISO 8601, UTC, when the request arrived
    method: str
    path: str
    status: int
    model_version: str
    arm: str
    seconds: float
    request: bytes
    response: bytes


class PayloadLog(Protocol):
    """Takes exchanges off the request path: ``offer`` never blocks, ``close`` sends what is left."""

    def offer(self, exchange: Exchange) -> None: ...

    def close(self) -> None: ...


def logged_endpoint(route: str) -> bool:
    """The routes whose exchanges are logged: the scoring ones (not health, metrics or feedback)."""
    return route in ("/predict", "/predict_batch") or route.endswith("/infer")
