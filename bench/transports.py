"""The stream on each Kafka transport, against what a hand-written librdkafka loop does with the same model.

Measured in one run, over the same events on the same broker, alternated (best of ``--repeats``):
- confluent passthrough: consume up to 2,000 events, produce each value, flush, commit; no model
  (librdkafka's limit);
- confluent hand-written loop: the same, with the same model, decoding, one frame per batch,
  the same JSON body and headers as scorepipe's predictions (the reference issue 26 names);
- ``scorepipe stream`` on kafka-python and on confluent (the StreamConsumer, in this process);
- exactly-once on confluent against its at-least-once;
- produce-to-prediction latency (p50, p99) at ``--rate`` with `scorepipe stream` as its own process,
  on each transport.

Usage: .venv/bin/python bench/transports.py [--events 100000] [--repeats 3] [--rate 1000] [--seconds 15]
Uses KAFKA_BOOTSTRAP_SERVERS if set, else starts the project's local broker.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from confluent_kafka import Consumer, Producer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.batch import registry  # noqa: E402
from bench.stream import latency, scorepipe_consumer, settings_for  # noqa: E402
from devservers.kafka import KafkaBroker  # noqa: E402
from scorepipe.settings import Settings  # noqa: E402
from scoring import Scorer  # noqa: E402
from scoring.scorer import CONFIDENCE, PREDICTION  # noqa: E402
from streaming.events import EventDecoder, encode_prediction, iso_ms  # noqa: E402
from streaming.producer import produce  # noqa: E402
from streaming.topics import count_messages, ensure_topics  # noqa: E402

BATCH = 2_000


def clients(settings: Settings) -> tuple[Consumer, Producer]:
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": settings.consumer_group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([settings.features_topic])
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers, "acks": "all", "linger.ms": 5})
    return consumer, producer


def confluent_passthrough(settings: Settings, events: int) -> float:
    consumer, producer = clients(settings)
    done = 0
    started = time.perf_counter()
    while done < events:
        messages = [m for m in consumer.consume(BATCH, 0.5) if m.error() is None]
        for m in messages:
            producer.produce(settings.predictions_topic, m.value(), m.key())
        producer.flush()
        if messages:
            consumer.commit(asynchronous=False)
        done += len(messages)
    elapsed = time.perf_counter() - started
    consumer.close()
    return events / elapsed


def confluent_loop(settings: Settings, scorer: Scorer, events: int) -> float:
    """The hand-written loop: one frame per batch, scorepipe's body and headers, produce, flush, commit."""
    consumer, producer = clients(settings)
    decoder = EventDecoder(scorer.bundle.schema)
    names = scorer.bundle.schema.names
    classes = [str(c) for c in scorer.bundle.classes]
    version = int(scorer.version)
    done = 0
    started = time.perf_counter()
    while done < events:
        messages = [m for m in consumer.consume(BATCH, 0.5) if m.error() is None]
        decoded = [(m, decoder.decode(m.value())) for m in messages]
        good = [(m, d) for m, d in decoded if d.error is None]
        if good:
            frame = pd.DataFrame.from_records([d.features or {} for _, d in good], columns=names)
            scored = scorer.score(frame)
            proba = scored[scorer.proba_columns].to_numpy()
            predictions = scored[PREDICTION].to_numpy(dtype=object)
            confidence = scored[CONFIDENCE].to_numpy()
            scored_at = datetime.now(UTC).isoformat(timespec="milliseconds")
            event_times = iso_ms([m.timestamp()[1] for m, _ in good])
            for i, (m, d) in enumerate(good):
                body = encode_prediction(
                    d.event_id,
                    prediction=predictions[i],
                    probabilities=dict(zip(classes, proba[i].tolist(), strict=True)),
                    confidence=float(confidence[i]),
                    model_version=version,
                    event_time=event_times[i],
                    scored_at=scored_at,
                    arm="champion",
                )
                headers = [
                    ("model_version", str(version).encode()),
                    ("event_time_ms", str(m.timestamp()[1]).encode()),
                    ("scored_at", scored_at.encode()),
                    ("arm", b"champion"),
                ]
                producer.produce(settings.predictions_topic, body, d.event_id.encode(), m.partition(), headers=headers)
        producer.flush()
        if messages:
            consumer.commit(asynchronous=False)
        done += len(messages)
    elapsed = time.perf_counter() - started
    consumer.close()
    return events / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--eos-events", type=int, default=50_000)
    parser.add_argument("--rate", type=float, default=1_000)
    parser.add_argument("--seconds", type=float, default=15)
    args = parser.parse_args()
    broker = None
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        broker = KafkaBroker(Path(tempfile.mkdtemp(prefix="bench-kafka-"))).start()
        bootstrap = broker.bootstrap_servers
    try:
        scorer = Scorer.from_registry(registry())
        base = settings_for(bootstrap, "transports", stream_batch_events=BATCH)
        ensure_topics(base, base.features_topic)
        produce(base, count=args.events, seed=321)
        assert count_messages(base, base.features_topic) == args.events

        def fresh(name: str, **update: object) -> Settings:
            return base.model_copy(
                update={
                    "consumer_group": f"{name}-{uuid.uuid4().hex[:6]}",
                    "predictions_topic": f"{name}-out-{uuid.uuid4().hex[:6]}",
                    "dlq_topic": f"{name}-dlq-{uuid.uuid4().hex[:6]}",
                    **update,
                }
            )

        runs: dict[str, list[float]] = {
            k: [] for k in ("confluent_passthrough", "confluent_loop", "scorepipe_kafka_python", "scorepipe_confluent")
        }
        for _ in range(args.repeats):
            runs["confluent_passthrough"].append(confluent_passthrough(fresh("pass"), args.events))
            runs["confluent_loop"].append(confluent_loop(fresh("loop"), scorer, args.events))
            runs["scorepipe_kafka_python"].append(scorepipe_consumer(fresh("kp"), scorer, args.events))
            runs["scorepipe_confluent"].append(
                scorepipe_consumer(fresh("ck", kafka_client="confluent"), scorer, args.events)
            )
        eos_events = min(args.eos_events, args.events)
        alo, eos = [], []
        for _ in range(args.repeats):
            alo.append(scorepipe_consumer(fresh("ck-alo", kafka_client="confluent"), scorer, eos_events))
            eos.append(
                scorepipe_consumer(
                    fresh("ck-eos", kafka_client="confluent", stream_guarantee="exactly-once"), scorer, eos_events
                )
            )
        best = {k: max(v) for k, v in runs.items()}
        lat = {
            client: latency(settings_for(bootstrap, f"lat-{client}", kafka_client=client), args.rate, args.seconds)
            for client in ("kafka-python", "confluent")
        }
        results = {
            "events": args.events,
            "events_per_s": {k: round(v) for k, v in best.items()},
            "confluent_to_hand_written_loop": round(best["scorepipe_confluent"] / best["confluent_loop"], 3),
            "confluent_to_kafka_python": round(best["scorepipe_confluent"] / best["scorepipe_kafka_python"], 3),
            "hand_written_loop_to_passthrough": round(best["confluent_loop"] / best["confluent_passthrough"], 3),
            "exactly_once_confluent": {
                "events": eos_events,
                "at_least_once": round(max(alo)),
                "exactly_once": round(max(eos)),
                "ratio": round(max(eos) / max(alo), 3),
            },
            "latency": {"rate": args.rate, **lat},
            "runs": {k: [round(x) for x in v] for k, v in runs.items()},
        }
        e = results["events_per_s"]
        print(f"confluent passthrough (no model):       {e['confluent_passthrough']:>8,} events/s")
        print(f"confluent hand-written loop (model):    {e['confluent_loop']:>8,} events/s")
        print(f"scorepipe stream, kafka-python:         {e['scorepipe_kafka_python']:>8,} events/s")
        print(f"scorepipe stream, confluent:            {e['scorepipe_confluent']:>8,} events/s")
        print(f"confluent / hand-written loop:          {results['confluent_to_hand_written_loop']:>8} (target >= 0.9)")
        print(f"confluent / kafka-python:               {results['confluent_to_kafka_python']:>8}")
        eo = results["exactly_once_confluent"]
        print(f"confluent exactly-once / at-least-once: {eo['ratio']:>8} (target >= 0.85)")
        for client, figures in lat.items():
            p50, p99 = figures["p50_ms"], figures["p99_ms"]
            print(f"latency at {args.rate:,.0f}/s, {client:>12}: p50 {p50} ms, p99 {p99} ms")
        print(json.dumps(results))
    finally:
        if broker is not None:
            broker.stop()


if __name__ == "__main__":
    main()
