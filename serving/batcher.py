"""Dynamic batching of concurrent requests into one ``Scorer.score`` call, as Triton's batcher does.

A model call has a large fixed cost (the default pipeline takes about as long for 100 rows as for
one), so one-record requests scored one by one cap a server at a few dozen per second per core.
Requests here join a queue; one scoring thread takes everything queued when it is free (no
waiting to fill a batch: an idle server scores a lone request at once), scores it as one frame with
the champion of that moment, and hands each request its own rows back. Under load batches grow by
themselves. Rows are scored independently, so a record gets the same score alone or batched.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import sklearn

from scoring import SchemaError, Scorer
from serving.runtime import RecordResult, Runtime

log = logging.getLogger("scorepipe.serve")


@dataclass
class _Job:
    records: list[Any]
    future: Future = field(default_factory=Future)


class DynamicBatcher:
    """One scoring thread fed by a queue of record lists; ``submit`` returns (scorer, results) futures."""

    def __init__(self, runtime: Runtime, *, max_records: int) -> None:
        self.runtime = runtime
        self.max_records = max_records
        self.batches = 0
        self.records = 0
        self._queue: deque[_Job] = deque()
        self._ready = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="dynamic-batcher", daemon=True)
        self._thread.start()

    def submit(self, records: list[Any]) -> Future:
        """Queue ``records`` (one request's); the future holds ``(scorer, [RecordResult, ...])``."""
        job = _Job(records)
        with self._ready:
            if self._stopping:
                raise RuntimeError("the batcher is stopped")
            self._queue.append(job)
            self._ready.notify()
        return job.future

    def stop(self) -> None:
        with self._ready:
            self._stopping = True
            self._ready.notify()
        self._thread.join(timeout=10)

    def _take(self) -> list[_Job] | None:
        """Everything queued (whole requests, up to ``max_records`` rows unless one request is larger)."""
        with self._ready:
            while not self._queue and not self._stopping:
                self._ready.wait()
            if not self._queue:
                return None
            jobs = [self._queue.popleft()]
            size = len(jobs[0].records)
            while self._queue and size + len(self._queue[0].records) <= self.max_records:
                job = self._queue.popleft()
                jobs.append(job)
                size += len(job.records)
            return jobs

    def _run(self) -> None:
        # Validation has already refused infinities and unexpected missing values, so scikit-learn's own
        # finiteness checks are redundant here; the setting is per thread and changes no score.
        sklearn.set_config(assume_finite=True)
        while (jobs := self._take()) is not None:
            try:
                scorer = self.runtime.scorer()  # one version for the whole batch
                for job, results in zip(jobs, self._score(scorer, jobs), strict=True):
                    job.future.set_result((scorer, results))
            except Exception as exc:  # noqa: BLE001 - handed to every waiting request, never lost
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(exc)

    def _score(self, scorer: Scorer, jobs: list[_Job]) -> list[list[RecordResult]]:
        records = [r for job in jobs for r in job.records]
        self.batches += 1
        self.records += len(records)
        try:
            merged = self.runtime.score_records(records, scorer)
        except SchemaError:
            # A frame-level problem in one request must not fail the others: score them apart.
            return [self._score_alone(scorer, job) for job in jobs]
        out, start = [], 0
        for job in jobs:
            part = merged[start : start + len(job.records)]
            for i, result in enumerate(part):
                result.index = i
            out.append(part)
            start += len(job.records)
        return out

    def _score_alone(self, scorer: Scorer, job: _Job) -> list[RecordResult]:
        try:
            return self.runtime.score_records(job.records, scorer)
        except SchemaError as exc:
            return [RecordResult(i, error="; ".join(exc.problems)) for i in range(len(job.records))]
