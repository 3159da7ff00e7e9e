"""The same events through each transport give the same bytes: bodies, headers, keys and partitions."""

from __future__ import annotations

import re

import pytest

from streaming.consumer import score_stream
from streaming.producer import produce
from streaming.topics import ensure_topics, read_topic
from tests.helpers import scorer_for

pytestmark = pytest.mark.integration
SCORED_AT = re.compile(rb'"scored_at":"[^"]*"')


def outputs(settings) -> dict[bytes, tuple[int, bytes, dict[str, bytes]]]:
    """Key -> (partition, body without its scoring time, headers without it), for predictions and dead letters."""
    found = {}
    for topic in (settings.predictions_topic, settings.dlq_topic):
        for m in read_topic(settings, topic):
            headers = {k: v for k, v in (m.headers or []) if k != "scored_at"}
            found[m.key] = (m.partition, SCORED_AT.sub(b'"scored_at":""', m.value), headers)
    return found


def test_both_transports_write_byte_identical_results_for_the_same_events(stream_settings):
    python = stream_settings(kafka_client="kafka-python")
    ensure_topics(python)
    sent = produce(python, count=1500, seed=61, malformed_share=0.03)
    confluent = python.model_copy(
        update={
            "kafka_client": "confluent",
            "consumer_group": f"{python.consumer_group}-confluent",
            "predictions_topic": f"{python.predictions_topic}-confluent",
            "dlq_topic": f"{python.dlq_topic}-confluent",
        }
    )
    ensure_topics(confluent, confluent.predictions_topic, confluent.dlq_topic)
    for settings in (python, confluent):
        stats = score_stream(settings, scorer_for(settings)).run(idle_exit_seconds=1)
        assert (stats.events, stats.dead_letters) == (1500, sent.malformed)  # the premise: all of it, both
    assert sent.malformed > 0
    by_python, by_confluent = outputs(python), outputs(confluent)
    assert len(by_python) == 1500
    assert by_python == by_confluent
