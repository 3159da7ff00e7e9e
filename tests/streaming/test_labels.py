"""Labels from a real Kafka topic into label files, then into a performance report on the stream's window."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from performance.report import build_performance_report
from scoring import Registry, Scorer, synthetic
from streaming.consumer import score_stream
from streaming.labels import LabelSink
from streaming.producer import produce
from streaming.topics import ensure_topics
from streaming.transport import transport_for
from tests.conftest import both_transports

pytestmark = pytest.mark.integration


@both_transports
def test_labels_from_kafka_join_the_live_window(stream_settings, tmp_path):
    settings = stream_settings()
    topic = settings.features_topic + "-labels"
    ensure_topics(settings)
    ensure_topics(settings, topic)
    produce(settings, count=2000, seed=61)
    score_stream(settings, Scorer.from_registry(Registry(settings.registry_dir))).run(idle_exit_seconds=1)

    truth = synthetic.generate(2000, seed=61)
    producer = transport_for(settings).producer(settings)
    for event_id, label in zip(truth["transaction_id"][:1500], truth["is_fraud"][:1500], strict=True):
        producer.send(topic, json.dumps({"event_id": event_id, "label": int(label)}).encode())
    producer.send(topic, b"{not json")
    producer.send(topic, json.dumps({"label": 1}).encode())
    producer.send(topic, json.dumps({"event_id": "txn-61-c-0000000000", "label": 7}).encode())
    producer.flush()
    producer.close()

    out = tmp_path / "labels"
    stats = LabelSink(settings, out, topic=topic, flush_rows=600).run(idle_exit_seconds=1)
    assert (stats.messages, stats.labels, stats.rejected) == (1503, 1501, 2)
    rejected = pd.concat(pd.read_parquet(p) for p in (out / "_rejected").rglob("*.parquet"))
    assert sorted(rejected["reason"].str.split(":").str[0]) == ["event_id", "invalid JSON"]
    again = LabelSink(settings, out, topic=topic).run(idle_exit_seconds=1)  # offsets were committed
    assert again.messages == 0

    summary = build_performance_report(settings.live_dir, out, tmp_path / "reports", settings)
    assert summary.labelled_rows == 1500 and summary.scored_rows == 2000
    assert summary.labels_rejected == 1  # the label 7: not a class, set aside by the report with its reason
    assert summary.versions[0].rows == 1500


def test_the_label_sink_rides_out_a_broker_outage(stream_settings, tmp_path):
    """The broker goes away with labels read and not yet committed, and comes back: every label lands, no crash."""
    import threading

    from devservers.kafka import KafkaBroker
    from tests.helpers import wait_for

    home = tmp_path / "kafka"
    broker = KafkaBroker(home).start()
    try:
        settings = stream_settings(kafka_bootstrap_servers=broker.bootstrap_servers)
        topic = "labels"
        ensure_topics(settings, topic)

        def send(first: int, count: int) -> None:
            producer = transport_for(settings).producer(settings)
            for i in range(first, first + count):
                producer.send(topic, json.dumps({"event_id": f"e-{i}", "label": i % 2}).encode())
            producer.flush(timeout=60)
            producer.close()

        out = tmp_path / "labels"
        sink = LabelSink(settings, out, topic=topic, flush_rows=100_000, flush_seconds=3.0, commit_timeout_ms=5000)
        running = threading.Thread(target=sink.run)
        running.start()
        try:
            send(0, 300)
            wait_for(lambda: sink.stats.messages >= 300, timeout=90, what="the first labels read")
            broker.stop()  # before the flush: its commit meets no broker
            wait_for(
                lambda: sink.stats.commit_failures or not running.is_alive(),
                timeout=120,
                what="a commit attempted while the broker is away",
            )
            assert running.is_alive(), "the label sink died with its broker"
            assert sink.stats.labels == 300  # the files were written all the same
            broker = KafkaBroker(home).start()
            send(300, 200)
            wait_for(lambda: sink.stats.labels >= 500, timeout=120, what="the labels sent after the restart")
        finally:
            sink.stop()
            running.join(timeout=60)
        assert not running.is_alive()
        written = pd.concat(pd.read_parquet(p) for p in out.rglob("labels-*.parquet"))
        assert set(written["event_id"]) == {f"e-{i}" for i in range(500)}
    finally:
        broker.stop()
