"""The stream scorer against a real Kafka broker: correctness, dead letters, crashes, scaling, shutdown."""

from __future__ import annotations

import json
import os
import signal
import threading
from collections import Counter

import pandas as pd
import pytest

from batch.run import run_batch
from scoring import synthetic
from streaming.consumer import score_stream
from streaming.events import DLQ_OFFSET, DLQ_PARTITION, DLQ_REASON, DLQ_STAGE, DLQ_TOPIC
from streaming.producer import events, produce
from streaming.topics import assigned_partitions, committed_offsets, count_messages, ensure_topics, read_topic
from streaming.transport import transport_for
from streaming.transport.base import TransportError
from tests.conftest import both_transports
from tests.helpers import (
    committed_at_least,
    committed_total,
    everything_committed,
    scorer_for,
    second_member_joins,
    stream_process,
    wait_for,
)

pytestmark = pytest.mark.integration


@both_transports
def test_every_event_gets_one_prediction_equal_to_the_batch_score(stream_settings, tmp_path):
    settings = stream_settings()
    ensure_topics(settings)
    produce(settings, count=1000, seed=21)
    stats = score_stream(settings, scorer_for(settings)).run(idle_exit_seconds=1)
    assert (stats.events, stats.predictions, stats.dead_letters) == (1000, 1000, 0)

    messages = read_topic(settings, settings.predictions_topic)
    bodies = {m.key.decode(): json.loads(m.value) for m in messages}
    assert len(messages) == len(bodies) == 1000
    first = messages[0]
    assert dict(first.headers)["model_version"] == b"1"
    assert json.loads(first.value)["event_time"] < json.loads(first.value)["scored_at"]

    rows = synthetic.generate(1000, seed=21, with_target=False)
    rows.to_parquet(tmp_path / "same-rows.parquet")
    run_batch(tmp_path / "same-rows.parquet", tmp_path / "batch", scorer_for(settings), chunk_size=300)
    batch = pd.read_parquet(tmp_path / "batch" / "same-rows.parquet").set_index("transaction_id")
    assert set(bodies) == set(batch.index)
    for event_id, body in bodies.items():
        assert body["probabilities"]["1"] == batch.at[event_id, "proba_1"]
        assert body["prediction"] == batch.at[event_id, "prediction"]

    live = pd.concat(pd.read_parquet(p) for p in sorted(settings.live_dir.rglob("*.parquet")))
    assert len(live) == 1000 and set(live["event_id"]) == set(bodies)
    assert {"amount", "channel", "proba_1", "model_version"} <= set(live.columns)


def test_a_quiet_stream_writes_its_live_window_rows_without_waiting_for_more_events(stream_settings):
    settings = stream_settings(live_window_seconds=1)
    ensure_topics(settings)
    produce(settings, count=50, seed=22)
    consumer = score_stream(settings, scorer_for(settings))
    runner = threading.Thread(target=consumer.run)
    runner.start()
    try:
        wait_for(lambda: consumer.stats.predictions == 50, timeout=60, what="the 50 events scored")
        files = wait_for(
            lambda: list(settings.live_dir.rglob("*.parquet")), timeout=30, what="the live window written while idle"
        )
        assert runner.is_alive()  # written by the running stream, not by its stop
    finally:
        consumer.stop()
        runner.join(timeout=60)
    assert sum(len(pd.read_parquet(f)) for f in files) == 50


def test_a_linger_gathers_a_trickle_of_events_into_larger_batches(stream_settings):
    """With stream_linger_ms, a batch smaller than the limit waits that long for more: fewer, larger batches."""
    settings = stream_settings(stream_linger_ms=300, stream_batch_events=1000)
    ensure_topics(settings)
    consumer = score_stream(settings, scorer_for(settings))
    sizes: list[int] = []

    def on_batch(stats) -> None:
        sizes.append(stats.events - sum(sizes))

    runner = threading.Thread(target=consumer.run, kwargs={"on_batch": on_batch})
    runner.start()
    try:
        wait_for(lambda: consumer.readiness.assigned == settings.topic_partitions, timeout=60, what="partitions held")
        produce(settings, count=300, seed=23, rate=150)  # a trickle: one event every ~7 ms
        wait_for(lambda: consumer.stats.predictions == 300, timeout=60, what="the 300 events scored")
    finally:
        consumer.stop()
        runner.join(timeout=60)
    batches = [n for n in sizes if n]
    assert sum(batches) == 300
    assert len(batches) <= 300 / 20, f"a linger of 300 ms at 150 events/s should gather dozens per batch: {batches}"


def test_the_running_stream_exports_the_live_drift_of_what_it_scores(stream_settings):
    """Drifted events raise the stream's live drift gauges, measured by its own thread while it runs."""
    settings = stream_settings(live_drift_interval_seconds=0.2, live_drift_rows=600)
    ensure_topics(settings)
    produce(settings, count=600, seed=23, drifted=True)
    consumer = score_stream(settings, scorer_for(settings))
    runner = threading.Thread(target=consumer.run)
    runner.start()
    try:
        wait_for(lambda: consumer.stats.predictions == 600, timeout=60, what="the 600 events scored")
        seen = wait_for(
            lambda: (s := consumer.metrics.snapshot()).get("scorepipe_live_drift_window_rows{}") == 600 and s,
            timeout=30,
            what="the live drift thread to measure the 600 rows",
        )
        assert runner.is_alive()  # measured by the running stream
    finally:
        consumer.stop()
        runner.join(timeout=60)
    assert seen["scorepipe_feature_drift{feature=amount,method=wasserstein}"] > 0.1
    assert seen["scorepipe_feature_drift_detected{feature=amount}"] == 1.0
    assert seen["scorepipe_live_drift_share{}"] > 0.1


@both_transports
def test_malformed_events_go_to_the_dead_letter_topic_unchanged_with_reasons(stream_settings):
    settings = stream_settings()
    ensure_topics(settings)
    sent = produce(settings, count=600, seed=5, malformed_share=0.1)
    stats = score_stream(settings, scorer_for(settings)).run(idle_exit_seconds=1)
    assert sent.malformed > 30
    assert (stats.dead_letters, stats.predictions) == (sent.malformed, 600 - sent.malformed)

    spoiled = {key: (value, kind) for key, value, kind in events(600, seed=5, malformed_share=0.1) if kind}
    letters = read_topic(settings, settings.dlq_topic)
    assert len(letters) == sent.malformed
    expected_reason = {
        "invalid_json": "invalid JSON",
        "missing_field": "missing fields: amount",
        "extra_field": "unexpected fields: coupon_code",
        "wrong_type": 'amount: expected a number, got string "twelve"',
        "nan_value": "invalid JSON",
        "unknown_category": "channel: unknown category 'carrier_pigeon'",
    }
    stages = Counter()
    for letter in letters:
        value, kind = spoiled[letter.key]
        headers = dict(letter.headers)
        assert letter.value == value
        assert expected_reason[kind] in headers[DLQ_REASON].decode()
        assert headers[DLQ_TOPIC].decode() == settings.features_topic
        assert int(headers[DLQ_PARTITION]) in range(4) and int(headers[DLQ_OFFSET]) >= 0
        stages[headers[DLQ_STAGE].decode()] += 1
    assert stages["decode"] > 0 and stages["validate"] > 0
    predictions = read_topic(settings, settings.predictions_topic)
    assert {m.key for m in predictions}.isdisjoint(spoiled)


@both_transports
def test_kill_9_then_restart_loses_nothing_and_duplicates_only_what_was_in_flight(stream_settings):
    settings = stream_settings(stream_batch_events=100)
    ensure_topics(settings)
    produce(settings, count=6000, seed=31)
    first = stream_process(settings)
    try:
        wait_for(committed_at_least(settings, 1500), timeout=90, what="1,500 events committed")
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
    assert first.returncode == -signal.SIGKILL
    at_kill = committed_offsets(settings, settings.features_topic)  # what the broker holds: the restart's start
    second = stream_process(settings, "--exit-when-idle", "1")
    output, _ = second.communicate(timeout=180)
    assert second.returncode == 0, output

    messages = read_topic(settings, settings.predictions_topic)
    counts = Counter(m.key.decode() for m in messages)
    expected_ids = {f"txn-31-c-{i:010d}" for i in range(6000)}
    assert set(counts) == expected_ids
    duplicates = sum(c - 1 for c in counts.values())
    print(f"duplicates after kill -9: {duplicates}, committed at the kill: {sum(at_kill.values())}")
    # Only what was past the committed offsets is scored again: the batches in flight and those whose
    # (asynchronous) commit had not reached the broker. An event before its partition's commit never is.
    inputs = {m.key.decode(): m for m in read_topic(settings, settings.features_topic)}
    twice = [key for key, count in counts.items() if count > 1]
    assert all(inputs[key].offset >= at_kill.get(inputs[key].partition, 0) for key in twice)
    assert duplicates <= 6000 - sum(at_kill.values())
    assert committed_total(settings) == 6000


@both_transports
def test_two_consumers_in_a_group_share_the_partitions(stream_settings):
    settings = stream_settings(stream_batch_events=50)
    ensure_topics(settings)
    consumers = [stream_process(settings, "--client-id", f"member-{i}") for i in range(2)]
    try:
        admin = transport_for(settings).admin(settings)

        def assignments():
            try:
                group = admin.describe_group(settings.consumer_group)
            except TransportError as exc:  # a broker that just started is still electing a coordinator
                if not exc.retriable:
                    raise
                return []
            return [{tp.partition for tp in m.assigned} for m in group.members if m.assigned]

        wait_for(lambda: len([a for a in assignments() if a]) == 2, timeout=90, what="two members with partitions")
        assigned = assignments()
        admin.close()
        assert assigned[0].isdisjoint(assigned[1]) and assigned[0] | assigned[1] == {0, 1, 2, 3}
        # The helper benchmarks wait on: the whole topic held once the group is stable again.
        wait_for(lambda: assigned_partitions(settings) == {0, 1, 2, 3}, timeout=60, what="a stable group")
        produce(settings, count=3000, seed=41)
        wait_for(everything_committed(settings), timeout=90, what="every event committed")
    finally:
        for process in consumers:
            process.send_signal(signal.SIGTERM)
    outputs = [p.communicate(timeout=60)[0] for p in consumers]
    assert [p.returncode for p in consumers] == [0, 0], outputs
    handled = [int(out.split("'events': ")[1].split(",")[0]) for out in outputs]
    assert all(n > 0 for n in handled) and sum(handled) == 3000


@both_transports
def test_sigterm_finishes_the_batch_commits_and_exits_zero(stream_settings):
    settings = stream_settings(stream_batch_events=50)
    ensure_topics(settings)
    producer = threading.Thread(target=produce, args=(settings,), kwargs={"count": 4000, "rate": 2000, "seed": 51})
    producer.start()
    process = stream_process(settings)
    try:
        wait_for(committed_at_least(settings, 500), timeout=90, what="500 events committed")
    finally:
        process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=60)
    producer.join()
    assert process.returncode == 0, output
    assert "stopped cleanly" in output
    published = count_messages(settings, settings.predictions_topic) + count_messages(settings, settings.dlq_topic)
    assert 500 <= committed_total(settings) == published < 4000 + 1


@both_transports
def test_a_member_joining_mid_stream_takes_partitions_without_loss(stream_settings):
    """The rebalance commits what the first member finished; every event is predicted, few twice."""
    settings = stream_settings(stream_batch_events=100)
    ensure_topics(settings)
    sent, _ = second_member_joins(settings, rate=1000, seed=61, after_join=4000)
    counts = Counter(m.key.decode() for m in read_topic(settings, settings.predictions_topic))
    assert set(counts) == {f"txn-61-c-{i:010d}" for i in range(sent)}
    duplicates = sum(c - 1 for c in counts.values())
    print(f"duplicates across the rebalance: {duplicates}")
    assert duplicates <= settings.stream_batch_events
    assert committed_total(settings) == sent
