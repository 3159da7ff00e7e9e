"""The pipelined stream under broker trouble: a send that fails mid-stream, and the broker restarting."""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter

import pytest

from devservers.kafka import KafkaBroker, read_identity
from devservers.process import free_port, http_ok
from streaming.consumer import score_stream
from streaming.producer import produce
from streaming.topics import committed_offsets, count_messages, ensure_topics, read_topic
from tests.conftest import both_transports
from tests.helpers import (
    committed_at_least,
    committed_total,
    everything_committed,
    keys_on,
    paused,
    scorer_for,
    stream_process,
    wait_for,
)

pytestmark = pytest.mark.integration


def _event_ids_by_offset(settings) -> dict[tuple[int, int], str]:
    """(partition, offset) -> event id, for every event on the features topic."""
    return {(m.partition, m.offset): m.key.decode() for m in read_topic(settings, settings.features_topic)}


def _committed_have_predictions(settings) -> dict[int, int]:
    """Every event below a committed offset has its prediction on the topic; returns the committed offsets."""
    committed = committed_offsets(settings, settings.features_topic)
    predicted = set(keys_on(settings, settings.predictions_topic))
    for (partition, offset), event_id in _event_ids_by_offset(settings).items():
        if offset < committed.get(partition, 0):
            assert event_id in predicted, f"offset {offset} of partition {partition} committed without its prediction"
    return committed


@both_transports
def test_sends_failing_mid_stream_are_never_committed_past_and_are_retried(stream_settings, tmp_path):
    """The broker is paused (SIGSTOP) mid-stream for longer than the producer's delivery timeout.

    The batches in flight fail; nothing past them is committed; when the broker answers again the
    consumer re-reads from the first failed batch on its own: every event predicted, none lost.
    """
    broker = KafkaBroker(tmp_path / "kafka").start()
    consumer = runner = None
    try:
        settings = stream_settings(
            kafka_bootstrap_servers=broker.bootstrap_servers,
            stream_batch_events=100,
            stream_delivery_timeout_ms=2500,
            stream_retry_max_seconds=1.0,
        )
        ensure_topics(settings)
        produce(settings, count=6000, seed=81)  # a backlog: the consumer is sending whenever the broker stops
        consumer = score_stream(settings, scorer_for(settings))
        runner = threading.Thread(target=consumer.run, kwargs={"idle_exit_seconds": 4})
        runner.start()
        wait_for(committed_at_least(settings, 800), timeout=60, what="800 events committed")
        paused(broker.pid)
        try:
            wait_for(lambda: consumer.stats.send_failures >= 1, timeout=60, what="a failed send")
            assert "results not acknowledged" in consumer.health.ready()[1]["results"]
        finally:
            os.killpg(broker.pid, signal.SIGCONT)
        assert sum(_committed_have_predictions(settings).values()) < 6000

        runner.join(timeout=120)
        assert not runner.is_alive()
        counts = Counter(keys_on(settings, settings.predictions_topic))
        missing = {f"txn-81-c-{i:010d}" for i in range(6000)} - set(counts)
        assert not missing, f"{len(missing)} events never predicted, e.g. {sorted(missing)[:3]}"
        assert sum(_committed_have_predictions(settings).values()) == 6000
        assert consumer.health.ready()[1]["results"] == "ok"  # recovered on its own
        duplicates = sum(c - 1 for c in counts.values())
        print(f"send failures: {consumer.stats.send_failures}, duplicates: {duplicates}")
        # Bounded: each failure re-sends at most what was in flight (and prefetched) when it happened.
        assert duplicates <= consumer.stats.send_failures * settings.stream_max_in_flight * settings.stream_batch_events
    finally:
        if consumer is not None:
            consumer.stop()
        if runner is not None:
            runner.join(timeout=60)
        broker.stop()


def test_the_broker_keeps_its_data_and_a_running_stream_rides_through_its_restart(stream_settings, tmp_path):
    home = tmp_path / "kafka"
    broker = KafkaBroker(home).start()
    port, cluster = broker.port, broker.cluster_id
    stream = None
    try:
        settings = stream_settings(kafka_bootstrap_servers=broker.bootstrap_servers, stream_batch_events=100)
        ensure_topics(settings)
        produce(settings, count=3000, seed=83)
        ops_port = free_port()
        ready = f"http://127.0.0.1:{ops_port}/readyz"
        stream = stream_process(settings, "--metrics-port", str(ops_port))
        wait_for(committed_at_least(settings, 1000), timeout=90, what="1,000 events committed")

        committed_before = committed_total(settings)
        broker.stop()  # mid-stream: the consumer keeps running and retries on its own
        # The consumer notices the outage within its broker check (5 s): wait for it to say so, alive.
        wait_for(lambda: stream.poll() is not None or not http_ok(ready), timeout=60, what="the broker outage seen")
        if stream.poll() is not None:
            output = stream.communicate(timeout=30)[0]
            pytest.fail(f"the consumer exited while the broker was down:\n{output[-4000:]}")
        broker = KafkaBroker(home).start()
        assert (broker.port, broker.cluster_id) == (port, cluster)
        assert read_identity(home)["data_dir"] == str(home / "data")
        assert count_messages(settings, settings.features_topic) == 3000  # the events are still there

        produce(settings, count=1000, seed=84)
        try:
            wait_for(everything_committed(settings), timeout=120, what="every event committed")
        except AssertionError as exc:
            stream.send_signal(signal.SIGTERM)
            output = stream.communicate(timeout=90)[0]
            pytest.fail(f"{exc}; committed {committed_offsets(settings, settings.features_topic)}:\n{output[-6000:]}")
    finally:
        if stream is not None and stream.poll() is None:
            stream.send_signal(signal.SIGTERM)
            output, _ = stream.communicate(timeout=90)
        broker.stop()
    assert stream.returncode == 0, output
    broker = KafkaBroker(home).start()  # and once more, after everything was committed
    try:
        counts = Counter(keys_on(settings, settings.predictions_topic))
        expected = {f"txn-83-c-{i:010d}" for i in range(3000)} | {f"txn-84-c-{i:010d}" for i in range(1000)}
        assert set(counts) == expected
        duplicates = sum(c - 1 for c in counts.values())
        print(f"duplicates across the broker restart: {duplicates}")
        # Only events past the last commit before the outage can be read twice: the consumer's group
        # membership may expire while the broker is down, and a new member starts from that commit.
        in_flight = (settings.stream_max_in_flight + 1) * settings.stream_batch_events
        assert duplicates <= (3000 - committed_before) + in_flight
        assert committed_total(settings) == 4000  # committed offsets survived the restarts too
    finally:
        broker.stop()
