"""Operating a running consumer on a real broker: hot reload on alias moves, refusals, shadow scoring."""

from __future__ import annotations

import json
import threading
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path

import pytest

from monitoring.metrics import ScoringMetrics
from scoring import Registry
from scoring.bundle import MODEL_FILE
from scoring.watcher import ModelWatcher
from streaming.consumer import score_stream
from streaming.producer import produce
from streaming.topics import count_messages, ensure_topics, read_topic
from tests.conftest import both_transports
from tests.helpers import committed_at_least, everything_committed, wait_for

pytestmark = pytest.mark.integration


class Running:
    """A consumer scoring on a background thread, stopped (finish, flush, commit) on exit."""

    def __init__(self, consumer):
        self.consumer = consumer
        self.thread = threading.Thread(target=consumer.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self.consumer

    def __exit__(self, *exc):
        self.consumer.stop()
        self.thread.join(timeout=60)
        assert not self.thread.is_alive()


def consumer_with(settings, *, shadow=None, metrics=None):
    registry = Registry(settings.registry_dir)
    metrics = metrics or ScoringMetrics()
    models = ModelWatcher(registry, check_seconds=0.2, listeners=[metrics.on_reload]).start()
    challenger = None
    if shadow:
        challenger = ModelWatcher(
            registry, shadow, required=False, check_seconds=0.2, listeners=[metrics.on_reload]
        ).start()
    return score_stream(settings, models, shadow=challenger, metrics=metrics), metrics


def versions_by_batch(messages):
    """Prediction versions grouped by the batch they were scored in (one scored_at per batch)."""
    batches = defaultdict(set)
    for m in messages:
        body = json.loads(m.value)
        batches[body["scored_at"]].add(body["model_version"])
    return batches


@both_transports
def test_promote_and_rollback_mid_stream_switch_versions_without_loss(stream_settings, bundle):
    settings = stream_settings(stream_batch_events=100)
    registry = Registry(settings.registry_dir)
    assert registry.register(bundle, note="v2") == 2
    ensure_topics(settings)
    consumer, metrics = consumer_with(settings)
    sender = threading.Thread(target=produce, args=(settings,), kwargs={"count": 6000, "rate": 1000, "seed": 71})
    with Running(consumer):
        sender.start()
        wait_for(committed_at_least(settings, 1500), timeout=60, what="1,500 events committed")
        promoted_at = datetime.now().astimezone()
        registry.promote(2)
        wait_for(lambda: consumer.models.version == 2, timeout=5, what="the consumer to follow the promotion")
        wait_for(committed_at_least(settings, 3500), timeout=60, what="3,500 events committed")
        registry.rollback()
        wait_for(lambda: consumer.models.version == 1, timeout=5, what="the consumer to follow the rollback")
        sender.join()
        wait_for(everything_committed(settings), timeout=60, what="every event committed")

    messages = read_topic(settings, settings.predictions_topic)
    counts = Counter(m.key.decode() for m in messages)
    assert set(counts) == {f"txn-71-c-{i:010d}" for i in range(6000)}
    assert max(counts.values()) == 1  # nothing lost, nothing scored twice because of a reload
    batches = versions_by_batch(messages)
    assert all(len(v) == 1 for v in batches.values()), "a micro-batch mixed model versions"
    sequence = [next(iter(batches[t])) for t in sorted(batches)]
    changes = [v for i, v in enumerate(sequence) if i == 0 or v != sequence[i - 1]]
    assert changes == [1, 2, 1]
    first_v2 = min(t for t, v in batches.items() if v == {2})
    assert (datetime.fromisoformat(first_v2) - promoted_at).total_seconds() < 3
    snap = metrics.snapshot()
    assert snap["scorepipe_model_reloads_total{alias=champion}"] == 2
    assert snap["scorepipe_model_info{alias=champion,version=1}"] == 1
    assert sum(v for k, v in snap.items() if k.startswith("scorepipe_predictions_total{")) == 6000


def test_a_tampered_promotion_is_refused_and_the_old_model_keeps_scoring(stream_settings, bundle):
    settings = stream_settings(stream_batch_events=100)
    registry = Registry(settings.registry_dir)
    registry.register(bundle)
    model = Path(registry.root) / "versions" / "000002" / MODEL_FILE
    model.chmod(0o644)
    model.write_bytes(model.read_bytes()[:-10] + b"0123456789")
    ensure_topics(settings)
    consumer, metrics = consumer_with(settings)
    sender = threading.Thread(target=produce, args=(settings,), kwargs={"count": 2000, "rate": 1000, "seed": 72})
    with Running(consumer):
        sender.start()
        wait_for(committed_at_least(settings, 500), timeout=60, what="500 events committed")
        registry.promote(2)
        wait_for(lambda: consumer.models.failures == 1, timeout=5, what="the refusal")
        assert "serving v1; 1 reload(s) refused, the last: v2: " in consumer.health.noted()["model"]  # on /readyz
        sender.join()
        wait_for(everything_committed(settings), timeout=60, what="every event committed")
    messages = read_topic(settings, settings.predictions_topic)
    assert len({m.key for m in messages}) == 2000
    assert {json.loads(m.value)["model_version"] for m in messages} == {1}
    assert "sha256" in consumer.models.last_error
    snap = metrics.snapshot()
    assert snap["scorepipe_model_reload_failures_total{alias=champion}"] == 1
    assert snap["scorepipe_model_info{alias=champion,version=1}"] == 1


def without_clock(message):
    body = json.loads(message.value)
    body.pop("scored_at")
    return body


@both_transports
def test_shadow_scoring_leaves_the_champion_unchanged_and_mirrors_every_row(
    stream_settings, challenger_bundle, tmp_path
):
    plain = stream_settings(stream_batch_events=200)
    registry = Registry(plain.registry_dir)
    registry.promote(registry.register(challenger_bundle), "challenger")
    shadowed = plain.model_copy(
        update={
            "consumer_group": plain.consumer_group + "-shadow",
            "predictions_topic": plain.predictions_topic + "-shadow-run",
            "shadow_topic": plain.predictions_topic + ".shadow",
            "home": tmp_path / "shadow-home",
        }
    )
    ensure_topics(plain)
    ensure_topics(shadowed, shadowed.predictions_topic, shadowed.shadow_topic)
    produce(plain, count=1500, seed=73, malformed_share=0.05)
    consumer_with(plain)[0].run(idle_exit_seconds=1)
    consumer, metrics = consumer_with(shadowed, shadow="challenger")
    stats = consumer.run(idle_exit_seconds=1)

    alone = {m.key: without_clock(m) for m in read_topic(plain, plain.predictions_topic)}
    beside = read_topic(shadowed, shadowed.predictions_topic)
    assert len(alone) == len(beside) == stats.predictions > 1300
    assert {m.key: without_clock(m) for m in beside} == alone
    shadow = read_topic(shadowed, shadowed.shadow_topic)
    assert {m.key for m in shadow} == set(alone)
    assert {json.loads(m.value)["model_version"] for m in shadow} == {2}
    assert {dict(m.headers)["model_version"] for m in shadow} == {b"2"}

    agreement = consumer.agreements[(1, 2)].summary()
    assert agreement["rows_compared"] == stats.predictions
    disagree = sum(json.loads(m.value)["prediction"] != alone[m.key]["prediction"] for m in shadow)
    assert agreement["label_agreement"] == pytest.approx(1 - disagree / stats.predictions)
    assert 0 < agreement["mean_abs_proba_diff"] < agreement["p95_abs_proba_diff"]
    snap = metrics.snapshot()
    assert snap["scorepipe_shadow_rows_compared_total{challenger_version=2,champion_version=1}"] == stats.predictions
    assert snap["scorepipe_model_info{alias=challenger,version=2}"] == 1
    window = list((shadowed.live_dir / "_shadow").rglob("*.parquet"))
    assert window, "the shadow's live window was not written"


def test_a_challenger_that_raises_never_disturbs_the_champion(stream_settings, challenger_bundle):
    settings = stream_settings(stream_batch_events=100)
    registry = Registry(settings.registry_dir)
    registry.promote(registry.register(challenger_bundle), "challenger")
    ensure_topics(settings, settings.features_topic, settings.predictions_topic, settings.dlq_topic)
    ensure_topics(settings, settings.shadow_topic)
    produce(settings, count=800, seed=74)
    consumer, metrics = consumer_with(settings, shadow="challenger")

    def broken(*_):
        raise RuntimeError("challenger exploded")

    consumer.shadow.current()._predict_proba = broken  # the model call, on every path (sklearn or the shortcut)
    stats = consumer.run(idle_exit_seconds=1)
    assert (stats.predictions, stats.dead_letters) == (800, 0)
    assert len({m.key for m in read_topic(settings, settings.predictions_topic)}) == 800
    assert metrics.snapshot()["scorepipe_shadow_errors_total{stage=score}"] >= 8
    assert count_messages(settings, settings.shadow_topic) == 0
