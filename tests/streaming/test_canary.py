"""Canary splits on the stream, on a real broker: each key meets its arm's version, and weights move live."""

from __future__ import annotations

import json
import signal
import threading

import pandas as pd
import pytest

from scoring import Registry, Scorer, synthetic
from scoring.canary import CANARY, CHAMPION, bucket_of, threshold
from scoring.canary_models import follow_canary
from scoring.watcher import watch_models
from streaming.consumer import score_stream
from streaming.producer import produce
from streaming.topics import assigned_partitions, ensure_topics, read_topic
from tests.conftest import both_transports
from tests.helpers import committed_at_least, everything_committed, stream_process, wait_for

pytestmark = pytest.mark.integration


def expected_arm(key: bytes, weight: float) -> str:
    return CANARY if bucket_of(key) < threshold(weight) else CHAMPION


@both_transports
def test_each_key_is_scored_by_its_arms_version_exactly_as_batch_scores_it(
    stream_settings, challenger_bundle, tmp_path
):
    settings = stream_settings(min_roc_auc=0.5)
    registry = Registry(settings.registry_dir)
    canary_version = registry.register(challenger_bundle, note="canary")
    registry.start_canary(f"v{canary_version}", weight=30)
    ensure_topics(settings)
    produce(settings, count=2000, seed=31, malformed_share=0.02)
    models, _ = watch_models(settings, "champion")
    canary = follow_canary(settings, models)
    assert canary is not None and canary.split().active  # the premise: the plan was picked up before any event
    stats = score_stream(settings, models, canary=canary).run(idle_exit_seconds=1)
    assert stats.events == 2000 and stats.dead_letters > 10

    messages = read_topic(settings, settings.predictions_topic)
    assert len(messages) == len({m.key for m in messages}) == stats.predictions
    arms = {}
    for message in messages:
        headers = dict(message.headers or [])
        body = json.loads(message.value)
        arm = expected_arm(message.key, 30)
        assert headers["arm"].decode() == body["arm"] == arm
        assert body["model_version"] == int(headers["model_version"]) == (canary_version if arm == CANARY else 1)
        arms[message.key.decode()] = body
    share = sum(body["arm"] == CANARY for body in arms.values()) / len(arms)
    assert abs(share - 0.30) <= 0.04, share

    # Parity: each arm's rows get exactly the score its version gives them in a batch.
    rows = synthetic.generate(2000, seed=31, with_target=False).set_index(synthetic.ID_COLUMN)
    for version in (1, canary_version):
        ids = [i for i, body in arms.items() if body["model_version"] == version]
        scored = Scorer.from_registry(registry, version).score(rows.loc[ids].reset_index())
        expected = scored.set_index(synthetic.ID_COLUMN)["proba_1"]
        assert len(ids) > 100
        assert all(arms[i]["probabilities"]["1"] == expected[i] for i in ids), f"v{version} differs from batch"

    letters = read_topic(settings, settings.dlq_topic)
    assert len(letters) == stats.dead_letters
    live = pd.concat(pd.read_parquet(p) for p in sorted(settings.live_dir.rglob("*.parquet")))
    assert set(live["model_version"]) == {1, canary_version} and len(live) == len(arms)


@pytest.mark.parametrize(
    ("guarantee", "kafka_client"),
    [("at-least-once", "kafka-python"), ("exactly-once", "kafka-python"), ("at-least-once", "confluent")],
)
def test_raising_the_weight_under_a_running_stream_loses_no_event_and_scores_none_twice(
    stream_settings, challenger_bundle, guarantee
):
    settings = stream_settings(min_roc_auc=0.5, stream_guarantee=guarantee, model_check_seconds=0.2)
    registry = Registry(settings.registry_dir)
    canary_version = registry.register(challenger_bundle, note="canary")
    registry.start_canary(f"v{canary_version}", weight=10)
    ensure_topics(settings)
    total, rate = 6000, 1500.0

    def feed() -> None:
        produce(settings, count=total, rate=rate, seed=33)

    process = stream_process(settings, "--client-id", f"canary-{guarantee}")
    feeder = threading.Thread(target=feed)
    try:
        wait_for(lambda: assigned_partitions(settings) == set(range(settings.topic_partitions)), timeout=120,
                 what="the stream to hold every partition")  # fmt: skip
        feeder.start()
        wait_for(committed_at_least(settings, 1500), timeout=120, what="1,500 events committed at weight 10")
        registry.update_canary(lambda plan: plan.with_changes(weight=60))
        feeder.join(timeout=total / rate + 120)
        assert not feeder.is_alive(), "the feeder never finished"
        wait_for(everything_committed(settings), timeout=120, what="every event committed")
    finally:
        process.send_signal(signal.SIGTERM)
        if feeder.is_alive():
            feeder.join()
    output = process.communicate(timeout=60)[0]
    assert process.returncode == 0, output

    messages = read_topic(settings, settings.predictions_topic)  # read_committed
    keys = [m.key for m in messages]
    assert len(keys) == len(set(keys)) == total, "an event lost or scored twice"
    moved = {CHAMPION: 0, CANARY: 0}
    for message in messages:
        arm = dict(message.headers or [])["arm"].decode()
        bucket = bucket_of(message.key)
        if bucket < threshold(10):
            assert arm == CANARY  # raising the weight never moves a key back
        elif bucket >= threshold(60):
            assert arm == CHAMPION
        else:
            moved[arm] += 1
    # The premise: the change happened mid-stream, so keys in the band met both arms over time.
    assert moved[CHAMPION] > 0 and moved[CANARY] > 0, moved
