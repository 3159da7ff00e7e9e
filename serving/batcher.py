"""Dynamic batching of concurrent requests into one ``Scorer.score`` call, as Triton's batcher does.

A model call has a large fixed cost (the default pipeline takes about as long for 100 rows as for
one), so one-record requests scored one by one cap a server at a few dozen per second per core.
Every scoring route queues its request here: JSON records (``submit``) and Open Inference Protocol
V2 tensors (``submit_infer``). One scoring thread takes everything queued when it is free (no
waiting to fill a batch: an idle server scores a lone request at once), scores each run of
requests for the same model as one frame with the model of that moment, and hands each request
its own rows back. Under load batches grow by themselves. Rows are scored independently, so a
record gets the same score alone or batched.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from itertools import groupby
from typing import Any, Literal

import pandas as pd
import sklearn

from scoring import SchemaError, Scorer, ScoringError
from serving.runtime import RecordResult, Runtime

log = logging.getLogger("scorepipe.serve")


@dataclass
class _Job:
    kind: Literal["records", "infer"]
    payload: Any  # JSON records, or V2 input tensors
    rows: int
    version: str | None = None  # a pinned version (V2 paths), or None for the champion at scoring time
    future: Future = field(default_factory=Future)


class DynamicBatcher:
    """One scoring thread fed by a queue of requests; each ``submit`` returns a future of its answer."""

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
        """Queue one JSON request's ``records``; the future holds ``(scorer, [RecordResult, ...])``."""
        return self._queue_job(_Job("records", records, len(records)))

    def submit_infer(self, inputs: list[dict[str, Any]], version: str | None = None) -> Future:
        """Queue one V2 request's input tensors; the future holds ``(scorer, scored frame)`` or its error."""
        rows = max((len(t["data"]) for t in inputs if isinstance(t.get("data"), list)), default=0)
        return self._queue_job(_Job("infer", inputs, rows, version))

    def stop(self) -> None:
        with self._ready:
            self._stopping = True
            self._ready.notify()
        self._thread.join(timeout=10)

    def _queue_job(self, job: _Job) -> Future:
        with self._ready:
            if self._stopping:
                raise RuntimeError("the batcher is stopped")
            self._queue.append(job)
            self._ready.notify()
        return job.future

    def _take(self) -> list[_Job] | None:
        """Everything queued (whole requests, up to ``max_records`` rows unless one request is larger)."""
        with self._ready:
            while not self._queue and not self._stopping:
                self._ready.wait()
            if not self._queue:
                return None
            jobs = [self._queue.popleft()]
            size = jobs[0].rows
            while self._queue and size + self._queue[0].rows <= self.max_records:
                job = self._queue.popleft()
                jobs.append(job)
                size += job.rows
            return jobs

    def _run(self) -> None:
        # Validation has already refused infinities and unexpected missing values, so scikit-learn's own
        # finiteness checks are redundant here; the setting is per thread and changes no score.
        sklearn.set_config(assume_finite=True)
        while (jobs := self._take()) is not None:
            for (kind, version), group in groupby(jobs, key=lambda j: (j.kind, j.version)):
                run = list(group)
                try:
                    scorer = self.runtime.scorer(version)  # one version for the whole run of requests
                    if kind == "records":
                        self._records(scorer, run)
                    else:
                        self._infer(scorer, run)
                except Exception as exc:  # noqa: BLE001 - handed to every waiting request, never lost
                    for job in run:
                        if not job.future.done():
                            job.future.set_exception(exc)

    def _records(self, scorer: Scorer, jobs: list[_Job]) -> None:
        records = [r for job in jobs for r in job.payload]
        self.batches += 1
        self.records += len(records)
        try:
            merged = self.runtime.score_records(records, scorer)
        except SchemaError:
            # A frame-level problem in one request must not fail the others: score them apart.
            for job in jobs:
                job.future.set_result((scorer, self._records_alone(scorer, job)))
            return
        start = 0
        for job in jobs:
            part = merged[start : start + len(job.payload)]
            for i, result in enumerate(part):
                result.index = i
            job.future.set_result((scorer, part))
            start += len(job.payload)

    def _records_alone(self, scorer: Scorer, job: _Job) -> list[RecordResult]:
        try:
            return self.runtime.score_records(job.payload, scorer)
        except SchemaError as exc:
            return [RecordResult(i, error="; ".join(exc.problems)) for i in range(len(job.payload))]

    def _infer(self, scorer: Scorer, jobs: list[_Job]) -> None:
        """V2 requests: each checked alone, the valid ones scored as one frame, each answered with its rows."""
        frames: list[tuple[_Job, pd.DataFrame]] = []
        for job in jobs:
            try:
                frames.append((job, self.runtime.infer_frame(job.payload, scorer)))
            except ScoringError as exc:  # this request's own problem: the others go on
                job.future.set_exception(exc)
        if not frames:
            return
        self.batches += 1
        self.records += sum(len(f) for _, f in frames)
        try:
            scored = scorer.score(pd.concat([f for _, f in frames], ignore_index=True))
        except SchemaError:
            for job, frame in frames:
                self._answer(job, scorer, frame, None)
            return
        start = 0
        for job, frame in frames:
            self._answer(job, scorer, frame, scored.iloc[start : start + len(frame)].reset_index(drop=True))
            start += len(frame)

    def _answer(self, job: _Job, scorer: Scorer, frame: pd.DataFrame, scored: pd.DataFrame | None) -> None:
        try:
            scored = scorer.score(frame) if scored is None else scored
            job.future.set_result((scorer, self.runtime.infer_result(frame, scorer, scored)))
        except ScoringError as exc:
            job.future.set_exception(exc)
