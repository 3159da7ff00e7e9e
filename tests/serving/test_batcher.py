"""The dynamic batcher: concurrent requests share one Scorer call and each gets exactly its own rows back."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from monitoring.metrics import ScoringMetrics
from scoring import Settings, synthetic
from scoring.watcher import ModelWatcher
from serving.batcher import DynamicBatcher
from serving.runtime import Runtime


@pytest.fixture
def runtime(make_registry, tmp_path):
    registry = make_registry()
    watcher = ModelWatcher(registry, check_seconds=3600).start()
    return Runtime(Settings(home=tmp_path, registry=registry.root), watcher, ScoringMetrics())


def requests_of(n, seed):
    frame = synthetic.generate(n, seed=seed, with_target=False).drop(columns=[synthetic.ID_COLUMN])
    return [
        {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
        for r in frame.to_dict("records")
    ]


def test_queued_requests_are_scored_together_and_answered_in_order(runtime):
    batcher = DynamicBatcher(runtime, max_records=1000)
    gate = threading.Event()
    original = runtime.score_records

    def slow_first(records, scorer):
        gate.wait(5)  # hold the first batch so the others queue up behind it
        return original(records, scorer)

    runtime.score_records = slow_first
    jobs = [requests_of(k, seed=k) for k in (1, 3, 5, 2, 4)]
    jobs[2][1]["amount"] = -1.0
    futures = [batcher.submit(job) for job in jobs]
    gate.set()
    answers = [f.result(timeout=30) for f in futures]
    batcher.stop()
    assert batcher.batches < len(jobs) and batcher.records == 15
    for job, (scorer, results) in zip(jobs, answers, strict=True):
        alone = original(job, scorer)
        assert [r.index for r in results] == list(range(len(job)))
        assert [r.scores for r in results] == [r.scores for r in alone]
        assert [r.error for r in results] == [r.error for r in alone]
    assert "amount: -1.0 is below the minimum" in answers[2][1][1].error


def test_a_batch_never_exceeds_the_limit_unless_one_request_does(runtime):
    batcher = DynamicBatcher(runtime, max_records=4)
    futures = [batcher.submit(requests_of(3, seed=s)) for s in range(4)] + [batcher.submit(requests_of(6, seed=9))]
    results = [f.result(timeout=30)[1] for f in futures]
    batcher.stop()
    assert [len(r) for r in results] == [3, 3, 3, 3, 6]
    assert batcher.batches == 5  # 3 + 3 > 4: every request alone
