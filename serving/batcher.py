"""Dynamic batching of concurrent requests into one ``Scorer.score`` call, as Triton's batcher does.

A model call has a large fixed cost (the default pipeline takes about as long for 100 rows as for
one), so one-record requests scored one by one cap a server at a few dozen per second per core.
Every scoring route queues its request here: JSON records (``submit``) and Open Inference Protocol
V2 tensors (``submit_infer``). One scoring thread takes everything queued when it is free (no
waiting to fill a batch: an idle server scores a lone request at once), scores each run of
requests for the same model as one frame with the model of that moment, and hands each request
its own rows back. Under load batches grow by themselves. Rows are scored independently, so a
record gets the same score alone or batched. Under a canary plan each record (a V2 request as a
whole) meets the arm its key gives (``scoring.canary``), decided with the split of the moment the
run is scored, and is scored by that arm's version.

A request of a few records that the record path scores (tens of microseconds each) is scored at
once by the caller (``score_now``) when the scoring thread is free and nothing is queued: waking
that thread and being woken back costs an idle machine more than the scoring (about 2 ms of a
lone request's 4.5 ms at 100 requests/s, measured). One lock keeps the two from scoring at once.
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
from scoring.canary import CANARY, CHAMPION, canary_mask
from scoring.canary_models import Split
from serving.runtime import RECORD_PATH_MAX, RecordResult, Runtime

log = logging.getLogger("scorepipe.serve")
IDLE_S = 1.0  # with nothing queued, how often the scoring thread checks whether live-window rows are due


@dataclass
class _Job:
    kind: Literal["records", "infer"]
    payload: Any  # JSON records, or V2 input tensors
    rows: int
    version: str | None = None  # a pinned version (V2 paths), or None for the champion at scoring time
    keys: list[bytes] | None = None  # what decides each record's arm (one for a V2 request); None: champion
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
        self._scoring = threading.Lock()  # held while scoring, by the scoring thread or by ``score_now``
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="dynamic-batcher", daemon=True)
        self._thread.start()

    def submit(self, records: list[Any], keys: list[bytes] | None = None) -> Future:
        """Queue one JSON request's ``records`` (with each one's arm key); the future holds ``(scorer, results)``."""
        return self._queue_job(_Job("records", records, len(records), keys=keys))

    def score_now(self, records: list[Any], keys: list[bytes] | None = None) -> Future | None:
        """Score a few records in the calling thread if the scoring thread is free; None: ``submit`` them.

        Only what the record path scores (up to ``RECORD_PATH_MAX`` records, a version with compiled
        trees verified for records): a frame would hold the caller for milliseconds.
        """
        if len(records) > RECORD_PATH_MAX or self._queue or not self._scoring.acquire(blocking=False):
            return None
        try:
            scorer, split = self.runtime.scorer(), self.runtime.split()
            canary = split.canary if split.active else None
            if not scorer.record_path or (canary is not None and not canary.record_path):
                return None
            job = _Job("records", records, len(records), keys=keys)
            self._records(scorer, [job])
            return job.future
        except Exception as exc:  # noqa: BLE001 - the caller's own request: its answer, as the batcher gives it
            failed: Future = Future()
            failed.set_exception(exc)
            return failed
        finally:
            self._scoring.release()

    def submit_infer(
        self, inputs: list[dict[str, Any]], version: str | None = None, key: bytes | None = None
    ) -> Future:
        """Queue one V2 request's input tensors; the future holds ``(scorer, scored frame, arm)`` or its error."""
        rows = max((len(t["data"]) for t in inputs if isinstance(t.get("data"), list)), default=0)
        return self._queue_job(_Job("infer", inputs, rows, version, keys=[key] if key is not None else None))

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
                if not self._ready.wait(timeout=IDLE_S):
                    with self._scoring:
                        self.runtime.idle()  # the live window is appended to under this lock: rolled too
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
            with self._scoring:
                self._score(jobs)

    def _score(self, jobs: list[_Job]) -> None:
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
        split = self.runtime.split() if jobs[0].version is None else None
        try:
            merged = self._score_split(scorer, split, records, [k for job in jobs for k in _keys(job)])
        except SchemaError:
            # A frame-level problem in one request must not fail the others: score them apart.
            for job in jobs:
                self._answer_records(job, scorer, split, self._records_alone(scorer, split, job))
            return
        start = 0
        for job in jobs:
            part = merged[start : start + len(job.payload)]
            for i, result in enumerate(part):
                result.index = i
            self._answer_records(job, scorer, split, part)
            start += len(job.payload)

    def _score_split(
        self, scorer: Scorer, split: Split | None, records: list[Any], keys: list[bytes | None]
    ) -> list[RecordResult]:
        """Each record scored by its arm's version (all by ``scorer`` when no canary takes traffic)."""
        if split is None or not split.active or split.canary is None or all(k is None for k in keys):
            return self.runtime.score_records(records, scorer)
        to_canary = canary_mask([k if k is not None else b"" for k in keys], split.weight)
        to_canary &= [k is not None for k in keys]
        results: list[RecordResult | None] = [None] * len(records)
        champion_part = [i for i, take in enumerate(~to_canary) if take]
        canary_part = [i for i, take in enumerate(to_canary) if take]
        if champion_part:  # a SchemaError here reaches the caller, before anything of the run was recorded
            scored = self.runtime.score_records([records[i] for i in champion_part], scorer)
            results = _placed(results, champion_part, scored)
        if canary_part:
            part = [records[i] for i in canary_part]
            try:
                scored = self.runtime.score_records(part, split.canary, CANARY)
            except Exception as exc:  # noqa: BLE001 - a broken canary must not fail a request: the champion answers
                self.runtime.canary_failed(split.canary, exc, len(part))
                scored = self.runtime.score_records(part, scorer)
            results = _placed(results, canary_part, scored)
        return [r for r in results if r is not None]

    def _answer_records(self, job: _Job, scorer: Scorer, split: Split | None, results: list[RecordResult]) -> None:
        """The request's results; the version named in its header is its records' (the canary's if all met it)."""
        for i, result in enumerate(results):
            result.index = i  # positions within this request, whichever way its records were scored
        arms = {r.scores.get("arm") for r in results if r.scores is not None}
        if arms == {CANARY} and split is not None and split.canary is not None:
            scorer = split.canary
        job.future.set_result((scorer, results))

    def _records_alone(self, scorer: Scorer, split: Split | None, job: _Job) -> list[RecordResult]:
        try:
            return self._score_split(scorer, split, job.payload, _keys(job))
        except SchemaError as exc:
            return [RecordResult(i, error="; ".join(exc.problems)) for i in range(len(job.payload))]

    def _infer(self, scorer: Scorer, jobs: list[_Job]) -> None:
        """V2 requests by arm (a request is one key): each checked alone, the valid ones scored as one frame."""
        split = self.runtime.split() if jobs[0].version is None else None
        if split is None or not split.active or split.canary is None:
            self._infer_arm(scorer, CHAMPION, jobs)
            return
        keyed = [job for job in jobs if job.keys]
        to_canary = canary_mask([job.keys[0] for job in keyed if job.keys], split.weight)
        canary_jobs = [job for job, take in zip(keyed, to_canary, strict=True) if take]
        champion_jobs = [job for job in jobs if not any(job is c for c in canary_jobs)]
        if champion_jobs:
            self._infer_arm(scorer, CHAMPION, champion_jobs)
        if canary_jobs:
            try:
                self._infer_arm(split.canary, CANARY, canary_jobs)
            except Exception as exc:  # noqa: BLE001 - a broken canary must not fail a request: the champion answers
                self.runtime.canary_failed(split.canary, exc, sum(job.rows for job in canary_jobs))
                self._infer_arm(scorer, CHAMPION, [job for job in canary_jobs if not job.future.done()])

    def _infer_arm(self, scorer: Scorer, arm: str, jobs: list[_Job]) -> None:
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
            with self.runtime.metrics.arm_seconds.labels(arm, str(scorer.version)).time():
                scored = scorer.score(pd.concat([f for _, f in frames], ignore_index=True))
        except SchemaError:
            for job, frame in frames:
                self._answer(job, scorer, arm, frame, None)
            return
        start = 0
        for job, frame in frames:
            self._answer(job, scorer, arm, frame, scored.iloc[start : start + len(frame)].reset_index(drop=True))
            start += len(frame)

    def _answer(self, job: _Job, scorer: Scorer, arm: str, frame: pd.DataFrame, scored: pd.DataFrame | None) -> None:
        try:
            scored = scorer.score(frame) if scored is None else scored
            job.future.set_result((scorer, self.runtime.infer_result(frame, scorer, scored, arm), arm))
        except ScoringError as exc:
            job.future.set_exception(exc)


def _keys(job: _Job) -> list[bytes | None]:
    """Each record's arm key (None: the champion's, whatever the split)."""
    return list(job.keys) if job.keys is not None else [None] * len(job.payload)


def _placed(
    results: list[RecordResult | None], where: list[int], scored: list[RecordResult]
) -> list[RecordResult | None]:
    """``scored`` (one result per position in ``where``) put back at those positions."""
    for i, result in zip(where, scored, strict=True):
        results[i] = result
    return results
