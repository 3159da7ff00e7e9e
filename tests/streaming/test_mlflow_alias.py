"""Moving an MLflow alias under a running consumer and a running two-worker server: no restart, no loss."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter

import pytest

from integrations.mlflow.models import import_model
from integrations.stores import model_stores
from monitoring.metrics import ScoringMetrics
from scoring import Registry, synthetic
from scoring.watcher import watch_models
from streaming.consumer import score_stream
from streaming.producer import produce
from streaming.topics import ensure_topics, read_topic
from tests.helpers import committed_at_least, everything_committed, wait_for
from tests.integrations.mlflow.helpers import TREES, fitted, log
from tests.serving.test_server import as_records, post, serve
from tests.streaming.test_operate import Running, versions_by_batch

pytestmark = pytest.mark.integration


def test_moving_the_mlflow_alias_switches_stream_and_server_without_loss_or_failed_request(
    mlflow_server, stream_settings, tmp_path
):
    import mlflow

    train = synthetic.generate(3000, seed=31)
    features = train[list(synthetic.FEATURES)]
    name = f"live-{uuid.uuid4().hex[:6]}"
    client = mlflow.MlflowClient(mlflow_server.tracking_uri)
    for seed in (4, 9):
        log(mlflow_server, fitted(train, seed=seed), features, name=name, skops_trusted_types=TREES)
    client.set_registered_model_alias(name, "champion", "1")
    ref = f"mlflow:models:/{name}@champion"

    settings = stream_settings(stream_batch_events=100, mlflow_tracking_uri=mlflow_server.tracking_uri,
                               model_check_seconds=0.2)  # fmt: skip
    registry = Registry(settings.registry_dir)
    bundle, source = import_model(f"models:/{name}/1", train, target=synthetic.TARGET,
                                  tracking_uri=mlflow_server.tracking_uri)  # fmt: skip
    first = registry.register(bundle, origin=source.origin())  # MLflow v2 is imported by whoever sees it first
    ensure_topics(settings)
    metrics = ScoringMetrics()
    models, _ = watch_models(settings, ref, listeners=[metrics.on_reload], stores=model_stores())
    consumer = score_stream(settings, models, metrics=metrics)
    server, url = serve(settings, tmp_path, "--workers", "2", "--model", ref)
    record = as_records(synthetic.generate(1, seed=3, with_target=False).drop(columns=[synthetic.ID_COLUMN]))[0]
    seen, failures, stop = [], [], threading.Event()

    def hammer():
        deadline = time.monotonic() + 120
        while not stop.is_set() and time.monotonic() < deadline:
            status, body = post(f"{url}/predict", record)
            (seen if status == 200 else failures).append(body.get("model_version", body))

    def all_answer(version):
        return lambda: len(seen) >= 20 and seen[-20:].count(version) == 20

    # Events keep coming until the last switch is seen: a version is swapped in between micro-batches,
    # so a stream that ran dry would never show it.
    sent, feeding = [], threading.Event()

    def feed():
        deadline = time.monotonic() + 180
        seed = 1000
        while not feeding.is_set() and time.monotonic() < deadline:
            produce(settings, count=250, rate=1000, seed=seed)
            sent.append(seed)
            seed += 1

    requests = threading.Thread(target=hammer)
    sender = threading.Thread(target=feed)
    try:
        with Running(consumer):
            requests.start()
            sender.start()
            wait_for(committed_at_least(settings, 1500), timeout=60, what="1,500 events committed")
            client.set_registered_model_alias(name, "champion", "2")
            wait_for(lambda: consumer.models.version not in (None, first), timeout=30, what="the stream on MLflow v2")
            second = consumer.models.version
            wait_for(all_answer(second), timeout=30, what="both server workers on MLflow v2")
            client.set_registered_model_alias(name, "champion", "1")
            wait_for(lambda: consumer.models.version == first, timeout=30, what="the stream back on MLflow v1")
            wait_for(all_answer(first), timeout=30, what="both server workers back on MLflow v1")
            at_the_end = len(sent)
            wait_for(lambda: len(sent) >= at_the_end + 2, timeout=30, what="events scored after the switch back")
            feeding.set()
            sender.join()
            wait_for(everything_committed(settings), timeout=60, what="every event committed")
            stop.set()
            requests.join()
    finally:
        feeding.set()
        stop.set()
        server.stop()
        models.stop()

    assert failures == []
    assert len(registry.find(kind="mlflow", name=name, version="2")) == 1  # three watchers, one import
    assert registry.info(second).origin["version"] == "2"
    messages = read_topic(settings, settings.predictions_topic)
    counts = Counter(m.key.decode() for m in messages)
    assert set(counts) == {f"txn-{seed}-c-{i:010d}" for seed in sent for i in range(250)} and max(counts.values()) == 1
    batches = versions_by_batch(messages)
    assert all(len(v) == 1 for v in batches.values()), "a micro-batch mixed model versions"
    sequence = [next(iter(batches[t])) for t in sorted(batches)]
    assert [v for i, v in enumerate(sequence) if i == 0 or v != sequence[i - 1]] == [first, second, first]
    served = [v for i, v in enumerate(seen) if i == 0 or v != seen[i - 1]]
    assert served[0] == first and second in served and served[-1] == first
    snap = metrics.snapshot()
    assert snap["scorepipe_model_reloads_total{alias=" + ref + "}"] == 2
    assert snap[f"scorepipe_model_origin_info{{alias={ref},origin=mlflow:{name}/1,version={first}}}"] == 1
    assert not [k for k, v in snap.items() if k.startswith("scorepipe_model_origin_info") and "/2," in k and v]
