"""The dynamic batcher: concurrent requests share one Scorer call and each gets exactly its own rows back."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from monitoring.metrics import ScoringMetrics
from scorepipe.settings import Settings
from scoring import synthetic
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


def v2_inputs(rows):
    frame = synthetic.generate(rows, seed=rows, with_target=False).drop(columns=[synthetic.ID_COLUMN])
    return [
        {
            "name": c,
            "shape": [rows],
            "datatype": "BYTES" if frame[c].dtype == object else "FP64",
            "data": [None if isinstance(v, float) and np.isnan(v) else v for v in frame[c].tolist()],
        }
        for c in frame.columns
    ]


def test_v2_requests_go_through_the_batcher_together_and_a_bad_one_fails_alone(runtime):
    from serving.errors import RequestError, UnknownModelError

    batcher = DynamicBatcher(runtime, max_records=1000)
    gate = threading.Event()
    original = runtime.infer_frame

    def slow_first(inputs, scorer):
        gate.wait(5)  # hold the first batch so the others queue up behind it
        return original(inputs, scorer)

    runtime.infer_frame = slow_first
    bad = v2_inputs(2)
    bad[0]["datatype"] = "BOOL"
    futures = [batcher.submit_infer(v2_inputs(n)) for n in (3, 4, 5)]
    futures.append(batcher.submit_infer(bad))
    futures.append(batcher.submit_infer(v2_inputs(2), version="99"))
    gate.set()
    answers = [f.result(timeout=30) for f in futures[:3]]
    batcher.stop()
    assert batcher.batches < 5
    for n, (scorer, scored, arm) in zip((3, 4, 5), answers, strict=True):
        assert arm == "champion"
        alone = runtime.infer(original(v2_inputs(n), scorer), scorer)
        assert scored["proba_1"].tolist() == alone["proba_1"].tolist()
    with pytest.raises(RequestError, match="cannot be scored") as refused:
        futures[3].result(timeout=30)
    assert any("datatype 'BOOL'" in p for p in refused.value.problems)
    with pytest.raises(UnknownModelError, match="unknown model version '99'"):
        futures[4].result(timeout=30)


def test_the_runtime_raises_scoring_errors_not_http_statuses(runtime):
    from serving.errors import ApiError, ModelUnavailableError, TooLargeError

    oversized = [{**t, "shape": [1200], "data": t["data"] * 400} for t in v2_inputs(3)]  # the limit is 1000
    with pytest.raises(TooLargeError, match="1200 rows is more than the limit of 1000") as too_large:
        runtime.infer_frame(oversized, runtime.scorer())
    assert not isinstance(too_large.value, ApiError) and not hasattr(too_large.value, "status")
    runtime.models.stop()
    runtime.models._serving = None  # the watcher lost its model
    with pytest.raises(ModelUnavailableError, match="no model loaded"):
        runtime.scorer()


def test_a_few_records_are_scored_at_once_by_the_caller_while_the_scoring_thread_is_free(runtime):
    """``score_now`` answers in the calling thread; busy, too many records or queued work: None, for ``submit``."""
    from serving.runtime import RECORD_PATH_MAX

    batcher = DynamicBatcher(runtime, max_records=1000)
    scored_in: list[str] = []
    original = runtime.score_records
    gate, held = threading.Event(), threading.Event()

    def watched(records, scorer, *args):
        scored_in.append(threading.current_thread().name)
        if len(records) == 2:  # the one request the scoring thread is made to hold
            held.set()
            gate.wait(10)
        return original(records, scorer, *args)

    runtime.score_records = watched
    try:
        job = requests_of(3, seed=21)
        job[1]["amount"] = -1.0
        done = batcher.score_now(job)
        assert done is not None and done.done() and scored_in == [threading.current_thread().name]
        scorer, results = done.result()
        assert [r.scores for r in results] == [r.scores for r in original(job, scorer)]
        assert "amount: -1.0 is below the minimum" in results[1].error
        assert batcher.score_now(requests_of(RECORD_PATH_MAX + 1, seed=22)) is None  # a frame: batched

        busy = batcher.submit(requests_of(2, seed=23))
        assert held.wait(10)  # the scoring thread is inside its run
        assert batcher.score_now(requests_of(1, seed=24)) is None
        gate.set()
        busy.result(timeout=30)
        assert scored_in[-1] == "dynamic-batcher"
    finally:
        gate.set()
        batcher.stop()
