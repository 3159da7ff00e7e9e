"""Delayed labels from Kafka: JSON ``{"event_id": ..., "label": ...}`` messages appended to label files.

The consumer buffers decoded labels and writes them as one Parquet file per flush (by count or age),
atomically, under ``OUT/date=YYYY-MM-DD/``; only then are the offsets committed (at least once: a
crash re-reads at most the unflushed buffer, and repeats are counted once by the label reader).
Messages that are not a JSON object with an ``event_id`` and a ``label`` go to ``OUT/_rejected/`` with
their raw value and the reason; whether a label is one of the model's classes is judged later, by the
performance report, which sets such rows aside with its own reasons.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from scoring.label_files import label_file_path, write_label_file
from scoring.layout import EVENT_ID, REJECTED_DIR
from scoring.storage import Location, as_location
from streaming.polling import Poller
from streaming.settings import StreamSettings
from streaming.transport import Transport, transport_for
from streaming.transport.base import Record, TopicPartition, TransportError

log = logging.getLogger("scorepipe.labels")


COMMIT_TIMEOUT_MS = 15_000


@dataclass
class LabelStats:
    """Running totals of one label consumer."""

    messages: int = 0
    labels: int = 0
    rejected: int = 0
    files: int = 0
    commit_failures: int = 0  # offsets not committed (broker away): the next commit covers them


class LabelSink:
    """Consumes the labels topic into Parquet label files; ``stop()`` flushes, commits and returns."""

    def __init__(
        self,
        settings: StreamSettings,
        out_dir: str | os.PathLike[str] | Location,
        *,
        topic: str = "labels",
        flush_rows: int = 10_000,
        flush_seconds: float = 5.0,
        stopping: threading.Event | None = None,
        transport: Transport | None = None,
        commit_timeout_ms: int = COMMIT_TIMEOUT_MS,
    ) -> None:
        self.out_dir = as_location(out_dir)
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self.stats = LabelStats()
        self._stopping = stopping or threading.Event()  # the entry point's, set by its signal handlers
        self._good: list[dict[str, Any]] = []
        self._bad: list[dict[str, Any]] = []
        self._offsets: dict[TopicPartition, int] = {}
        self._opened = time.monotonic()
        # A commit waits ``commit_timeout_ms`` at most: with the broker away, the files are kept, the
        # commit is retried at the next flush, and polling goes on.
        transport = transport or transport_for(settings)
        self.consumer = transport.label_consumer(settings, topic, commit_timeout_ms=commit_timeout_ms)
        self.poller = Poller(self.consumer, settings, topic, self._stopping)

    def stop(self, *_: object) -> None:
        self._stopping.set()

    def run(self, *, idle_exit_seconds: float | None = None) -> LabelStats:
        idle_since = time.monotonic()
        try:
            while not self._stopping.is_set():
                polled = self.poller.poll(timeout_ms=500)  # rides out a broker restart, as the stream does
                for record in polled:
                    self._take(record)
                if polled:
                    idle_since = time.monotonic()
                pending = len(self._good) + len(self._bad)
                if pending and (pending >= self.flush_rows or time.monotonic() - self._opened >= self.flush_seconds):
                    self._flush()
                if not polled and idle_exit_seconds is not None and time.monotonic() - idle_since >= idle_exit_seconds:
                    break
            self._flush()
        finally:
            self.consumer.close()
        return self.stats

    def _take(self, record: Record) -> None:
        if not self._good and not self._bad:
            self._opened = time.monotonic()
        self.stats.messages += 1
        tp = TopicPartition(record.topic, record.partition)
        self._offsets[tp] = record.offset + 1
        payload, reason = _label_of(record.value)
        if reason is not None:
            raw = record.value.decode(errors="replace") if record.value is not None else None
            self._bad.append({"value": raw, "reason": reason, "partition": record.partition, "offset": record.offset})
            return
        assert payload is not None  # no reason to refuse it: it is a JSON object with both fields
        label = payload["label"]
        self._good.append(
            {
                EVENT_ID: str(payload[EVENT_ID]),
                "label": None if label is None else str(int(label) if isinstance(label, bool) else label),
                "label_time": datetime.fromtimestamp(record.timestamp / 1000, UTC),
            }
        )

    def _flush(self) -> None:
        """Write what is buffered (labels and rejects), then commit the offsets it came from."""
        now = datetime.now(UTC)
        for rows, folder, kind in (
            (self._good, self.out_dir, "labels"),
            (self._bad, self.out_dir / REJECTED_DIR, "rejected"),
        ):
            if rows:
                write_label_file(rows, label_file_path(folder, kind, now))
                self.stats.files += 1
        self.stats.labels += len(self._good)
        self.stats.rejected += len(self._bad)
        if self._bad:
            log.warning("set aside %d label messages that could not be read", len(self._bad))
        self._good, self._bad = [], []
        if self._offsets:
            try:
                self.consumer.commit(self._offsets)
            except TransportError as exc:  # files written: read again, labels come twice (the join keeps one)
                self.stats.commit_failures += 1
                log.warning("label offsets not committed (%s): the next commit covers them", exc)
                return
            self._offsets = {}


def _label_of(value: bytes | None) -> tuple[dict[str, Any] | None, str | None]:
    """The label message as a JSON object, or why it is not one with ``event_id`` and ``label``."""
    try:
        payload = orjson.loads(value) if value is not None else None
    except orjson.JSONDecodeError as exc:
        return None, f"invalid JSON: {exc}"
    if not isinstance(payload, dict):
        return None, "expected a JSON object with event_id and label"
    if not isinstance(payload.get(EVENT_ID), str | int):
        return None, f"{EVENT_ID}: missing or not a string/integer"
    if "label" not in payload:
        return None, "label: missing"
    return payload, None
