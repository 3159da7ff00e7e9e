"""Exactly-once scoring on a real broker: crashes, a member joining, the broker restarting, a stuck transaction.

Every check reads results as ``read_committed`` (``read_topic``): each event must have exactly one
prediction or exactly one dead letter, never none and never two.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter

import pytest

from devservers.kafka import KafkaBroker
from streaming.consumer import score_stream
from streaming.producer import events, produce
from streaming.topics import ensure_topics, read_topic
from streaming.transport import transport_for
from streaming.transport.base import TransactionStuck
from tests.conftest import both_transports
from tests.helpers import (
    committed_at_least,
    committed_total,
    everything_committed,
    paused,
    scorer_for,
    second_member_joins,
    stream_process,
    wait_for,
)

pytestmark = pytest.mark.integration

EXACTLY_ONCE = {"stream_guarantee": "exactly-once"}


def assert_exactly_once(settings, expected_ids: set[str]) -> None:
    """Every expected event has one result (prediction or dead letter), and there is nothing else."""
    results = Counter(m.key.decode() for m in read_topic(settings, settings.predictions_topic))
    results.update(m.key.decode() for m in read_topic(settings, settings.dlq_topic))
    twice = {k: c for k, c in results.items() if c > 1}
    lost = expected_ids - set(results)
    assert not twice, f"{len(twice)} event(s) with more than one result, e.g. {sorted(twice.items())[:3]}"
    assert not lost, f"{len(lost)} event(s) without a result, e.g. {sorted(lost)[:3]}"
    assert set(results) == expected_ids


def ids(count: int, seed: int, malformed_share: float = 0.0) -> set[str]:
    return {key.decode() for key, _, _ in events(count, seed=seed, malformed_share=malformed_share)}


@both_transports
def test_sigkill_mid_stream_then_restart_gives_every_event_exactly_one_result(stream_settings):
    settings = stream_settings(stream_batch_events=100, **EXACTLY_ONCE)
    ensure_topics(settings)
    produce(settings, count=6000, seed=41, malformed_share=0.02)
    first = stream_process(settings, "--client-id", "member")
    try:
        wait_for(committed_at_least(settings, 1500), timeout=90, what="1,500 events committed")
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
    assert first.returncode == -signal.SIGKILL
    second = stream_process(settings, "--client-id", "member", "--exit-when-idle", "1")
    output, _ = second.communicate(timeout=180)
    assert second.returncode == 0, output
    assert "exactly-once" in output
    assert_exactly_once(settings, ids(6000, 41, 0.02))
    assert committed_total(settings) == 6000


@both_transports
def test_a_member_joining_mid_stream_leaves_no_duplicate_and_no_gap(stream_settings):
    settings = stream_settings(stream_batch_events=100, **EXACTLY_ONCE)
    ensure_topics(settings)
    sent, _ = second_member_joins(settings, rate=1000, seed=42, after_join=3000)
    assert_exactly_once(settings, ids(sent, 42))


@both_transports
def test_the_broker_stopped_and_started_under_a_running_stream(stream_settings, tmp_path):
    home = tmp_path / "kafka"
    broker = KafkaBroker(home).start()
    stream = None
    output = ""
    try:
        settings = stream_settings(
            kafka_bootstrap_servers=broker.bootstrap_servers,
            stream_batch_events=100,
            stream_transaction_timeout_ms=5000,
            **EXACTLY_ONCE,
        )
        ensure_topics(settings)
        produce(settings, count=3000, seed=43)
        stream = stream_process(settings, "--client-id", "member")
        wait_for(committed_at_least(settings, 1000), timeout=90, what="1,000 events committed")
        broker.stop()
        time.sleep(3)  # an outage of a few seconds: the stream must ride it out, not time it
        broker = KafkaBroker(home).start()
        produce(settings, count=1000, seed=44)
        try:
            wait_for(everything_committed(settings), timeout=150, what="every event committed")
        except AssertionError as exc:
            stream.send_signal(signal.SIGTERM)
            output = stream.communicate(timeout=90)[0]
            pytest.fail(f"{exc}:\n{output[-6000:]}")
        stream.send_signal(signal.SIGTERM)
        output = stream.communicate(timeout=90)[0]
        assert stream.returncode == 0, output[-4000:]
        assert_exactly_once(settings, ids(3000, 43) | ids(1000, 44))
    finally:
        if stream is not None and stream.poll() is None:
            stream.kill()
            stream.wait()
        broker.stop()


@both_transports
def test_a_transaction_the_broker_never_answers_fails_within_its_timeout(stream_settings, tmp_path):
    """kafka-python's own commit would wait forever on a paused broker; the bounded one gives up."""
    broker = KafkaBroker(tmp_path / "kafka").start()
    try:
        settings = stream_settings(
            kafka_bootstrap_servers=broker.bootstrap_servers, stream_transaction_timeout_ms=2000, **EXACTLY_ONCE
        )
        ensure_topics(settings)
        transactions = transport_for(settings).transactions(settings, "stuck-test", threading.Event())
        # Premise: a transaction the broker answers. A fresh broker may still be loading its transaction
        # coordinator ("Coordinator load in progress"); one committed transaction proves it is up.
        transactions.begin()
        sent(transactions.producer, settings.predictions_topic, b"w")
        transactions.commit({}, None)  # type: ignore[arg-type]  # no offsets: no consumer asked
        transactions.begin()
        sent(transactions.producer, settings.predictions_topic, b"x")
        paused(broker.pid)
        try:
            started = time.monotonic()
            with pytest.raises(TransactionStuck, match="within 2000 ms"):
                transactions.commit({}, None)  # type: ignore[arg-type]  # no offsets: no consumer asked
            assert time.monotonic() - started < 5
        finally:
            os.killpg(broker.pid, signal.SIGCONT)
        transactions.replace()  # a new producer fences the stuck one and aborts its transaction
        transactions.begin()
        sent(transactions.producer, settings.predictions_topic, b"y")
        transactions.commit({}, None)
        # The stuck commit had reached the broker, which may carry it out once it runs again: its
        # outcome is the broker's (the stream reads the committed offsets to know it). Never twice.
        values = sorted(m.value for m in read_topic(settings, settings.predictions_topic))
        assert values in ([b"w", b"y"], [b"w", b"x", b"y"])
        transactions.close(timeout=5)
    finally:
        broker.stop()


@both_transports
def test_in_process_exactly_once_counts_and_commits_like_at_least_once(stream_settings):
    settings = stream_settings(**EXACTLY_ONCE)
    ensure_topics(settings)
    sent = produce(settings, count=1500, seed=45, malformed_share=0.05)
    consumer = score_stream(settings, scorer_for(settings))
    stats = consumer.run(idle_exit_seconds=1)
    assert (stats.events, stats.dead_letters) == (1500, sent.malformed)
    assert stats.predictions == 1500 - sent.malformed
    assert consumer.delivery.transactions.commits == stats.commits > 0
    assert_exactly_once(settings, ids(1500, 45, 0.05))


def sent(producer, topic: str, value: bytes) -> None:
    """Send one record and wait for its acknowledgement (raising its error, if it failed)."""
    delivery = producer.delivery([producer.send(topic, value)])
    delivery.wait(10)
    assert delivery.done(), "no acknowledgement within 10 s"
    if delivery.error() is not None:
        raise delivery.error()
