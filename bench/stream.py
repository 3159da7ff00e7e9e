"""Stream scoring throughput and latency on a real Kafka broker.

Measured in one run, over the same events on the same broker:
- passthrough: the raw kafka-python consume -> produce -> commit loop in micro-batches, no model
  (the limit the scoring consumer chases);
- scorepipe: the StreamConsumer (decode, validate, score, publish, dead letters, commit);
- naive: decode, score and produce one message at a time, committing each;
- latency from produce to prediction (p50, p99) at a fixed rate, with `scorepipe stream` running
  as its own process;
- the cost of operating it live: the consumer following `champion` with its watcher (reload check)
  against a pinned model, and with a shadow challenger scored and published against without;
- exactly-once against at-least-once: throughput (alternated runs over the same events) and
  produce-to-prediction latency at the same rate, results read as read_committed in both;
- ``--only-cpu``: the consumer's CPU per event (user + system time of the `scorepipe stream`
  process over the timed window, every thread) with p50/p99 at a steady ``--cpu-rate`` (1,000/s), and
  events/s at saturation, for both guarantees, with the compiled trees on and off (the naive way:
  scikit-learn's own ``predict_proba``), alternated in the same run.

Usage: .venv/bin/python bench/stream.py [--events 100000] [--rate 2000] [--seconds 15] [--only-exactly-once]
       .venv/bin/python bench/stream.py --only-cpu [--cpu-rate 1000] [--seconds 20] [--repeats 2]
Uses KAFKA_BOOTSTRAP_SERVERS if set, else starts the project's local broker.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.batch import registry  # noqa: E402
from devservers.kafka import KafkaBroker  # noqa: E402
from scorepipe.settings import Settings  # noqa: E402
from scoring import Registry, Scorer, synthetic  # noqa: E402
from scoring.scorer import ScorerOptions  # noqa: E402
from scoring.training import train_bundle  # noqa: E402
from scoring.watcher import ModelWatcher  # noqa: E402
from streaming.consumer import StreamConsumer  # noqa: E402
from streaming.events import EventDecoder  # noqa: E402
from streaming.process import long_running_scorer  # noqa: E402
from streaming.producer import produce  # noqa: E402
from streaming.topics import assigned_partitions, count_messages, ensure_topics  # noqa: E402
from streaming.transport.kafka_python import KafkaPythonTransport  # noqa: E402


def settings_for(bootstrap: str, name: str, **overrides) -> Settings:
    return Settings(
        home=Path(tempfile.mkdtemp(prefix="bench-stream-")),
        kafka_bootstrap_servers=bootstrap,
        features_topic=f"{name}-features",
        predictions_topic=f"{name}-predictions-{uuid.uuid4().hex[:6]}",
        dlq_topic=f"{name}-dlq-{uuid.uuid4().hex[:6]}",
        consumer_group=f"{name}-{uuid.uuid4().hex[:6]}",
        **overrides,
    )


def group_consumer(settings: Settings, *, max_poll_records: int) -> KafkaConsumer:
    """A manually committing member of the settings' group, reading the features topic from the start."""
    return (
        KafkaPythonTransport()
        .consumer(
            settings,
            settings.features_topic,
            group_id=settings.consumer_group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=max_poll_records,
        )
        .client
    )


def passthrough(settings: Settings, events: int) -> float:
    """Raw client limit: poll a micro-batch, produce every value, flush, commit; events/s."""
    consumer = group_consumer(settings, max_poll_records=settings.stream_batch_events)
    producer = KafkaPythonTransport().raw_producer(settings, acks="all", linger_ms=5, batch_size=256 * 1024).client
    done = 0
    started = time.perf_counter()
    while done < events:
        polled = consumer.poll(timeout_ms=500, max_records=settings.stream_batch_events)
        offsets = {}
        for tp, records in polled.items():
            for record in records:
                producer.send(settings.predictions_topic, key=record.key, value=record.value)
            offsets[tp] = OffsetAndMetadata(records[-1].offset + 1, "", -1)
            done += len(records)
        producer.flush()
        if offsets:
            consumer.commit(offsets)
    elapsed = time.perf_counter() - started
    consumer.close()
    producer.close()
    return events / elapsed


def scorepipe_consumer(settings: Settings, scorer, events: int, shadow=None) -> float:
    consumer = StreamConsumer(settings, scorer, shadow=shadow)
    finished = {}

    def on_batch(stats):
        if stats.events >= events and "at" not in finished:
            finished["at"] = time.perf_counter()
            consumer.stop()

    started = time.perf_counter()
    with long_running_scorer():  # as `scorepipe stream` runs it
        consumer.run(on_batch=on_batch)
    return events / (finished["at"] - started)


def naive(settings: Settings, scorer: Scorer, events: int) -> float:
    """One message at a time: decode, score a one-row frame, produce, wait, commit."""
    consumer = group_consumer(settings, max_poll_records=1)
    producer = KafkaPythonTransport().raw_producer(settings, acks="all").client
    decoder = EventDecoder(scorer.bundle.schema)
    done = 0
    started = time.perf_counter()
    while done < events:
        for tp, records in consumer.poll(timeout_ms=500, max_records=1).items():
            for record in records:
                decoded = decoder.decode(record.value)
                if decoded.features is not None:
                    row = scorer.score(pd.DataFrame([decoded.features]))
                    value = json.dumps({"event_id": decoded.event_id, "p": float(row["proba_1"].iloc[0])})
                    producer.send(settings.predictions_topic, key=record.key, value=value.encode()).get(timeout=30)
                consumer.commit({tp: OffsetAndMetadata(record.offset + 1, "", -1)})
                done += 1
    elapsed = time.perf_counter() - started
    consumer.close()
    producer.close()
    return events / elapsed


def with_challenger(reg: Registry) -> Registry:
    """The bench registry with a second model (trained on drifted data) as challenger."""
    if "challenger" not in reg.aliases():
        frame = synthetic.generate(100_000, seed=43, drifted=True)
        bundle = train_bundle(frame, synthetic.TARGET, features=list(synthetic.FEATURES), bounds=synthetic.BOUNDS)
        reg.promote(reg.register(bundle, note="bench challenger"), "challenger")
    return reg


def current_cost_ns(watcher: ModelWatcher, calls: int = 1_000_000) -> float:
    """Nanoseconds per ``watcher.current()``: what the consumer pays per micro-batch to follow an alias."""
    started = time.perf_counter_ns()
    for _ in range(calls):
        watcher.current()
    return (time.perf_counter_ns() - started) / calls


def operate(fresh, reg: Registry, events: int, repeats: int) -> dict:
    """Pinned vs following (reload check) vs following with a shadow, alternated to share the noise."""
    runs: dict[str, list[float]] = {"pinned": [], "following": [], "shadow": []}
    for _ in range(repeats):
        runs["pinned"].append(scorepipe_consumer(fresh("pinned"), Scorer.from_registry(reg), events))
        watcher = ModelWatcher(reg, "champion", check_seconds=1.0).start()
        runs["following"].append(scorepipe_consumer(fresh("following"), watcher, events))
        watcher = ModelWatcher(reg, "champion", check_seconds=1.0).start()
        shadow = ModelWatcher(reg, "challenger", required=False, check_seconds=1.0).start()
        runs["shadow"].append(scorepipe_consumer(fresh("shadow"), watcher, events, shadow=shadow))
    best = {name: max(values) for name, values in runs.items()}
    watcher = ModelWatcher(reg, "champion", check_seconds=3600).start()
    per_call = current_cost_ns(watcher)
    return {
        "events": events,
        "runs_per_mode": repeats,
        "pinned_events_per_s": round(best["pinned"]),
        "following_events_per_s": round(best["following"]),
        "shadow_events_per_s": round(best["shadow"]),
        "following_ratio_to_pinned": round(best["following"] / best["pinned"], 3),
        "shadow_ratio_to_without": round(best["shadow"] / best["following"], 3),
        "current_call_ns": round(per_call, 1),
    }


def latency(settings: Settings, rate: float, seconds: float, reader_wait_ms: int = 500) -> dict:
    """Produce at ``rate`` for ``seconds`` while `scorepipe stream` runs; produce-to-prediction times.

    ``reader_wait_ms`` is the reader's fetch wait (kafka-python's default is 500 ms).
    """
    ensure_topics(settings)
    env = {**os.environ, **settings.model_copy(update={"registry": ROOT / "bench" / "out" / "registry"}).as_env()}
    stream = subprocess.Popen(
        [sys.executable, "-m", "scorepipe.cli", "stream"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    # read_committed: what an exactly-once reader must use
    reader = (
        KafkaPythonTransport()
        .consumer(settings, isolation_level="read_committed", fetch_max_wait_ms=reader_wait_ms)
        .client
    )
    partitions = [TopicPartition(settings.predictions_topic, p) for p in range(settings.topic_partitions)]
    reader.assign(partitions)
    reader.seek_to_end()
    try:
        deadline = time.monotonic() + 60  # the consumer holds every partition before timing starts
        while len(assigned_partitions(settings)) < settings.topic_partitions and time.monotonic() < deadline:
            time.sleep(0.2)
        count = int(rate * seconds)
        sender = threading.Thread(target=produce, args=(settings,), kwargs={"count": count, "rate": rate, "seed": 99})
        process = psutil.Process(stream.pid)
        cpu_before = process.cpu_times()
        sender.start()
        delays, split = [], []
        deadline = time.monotonic() + seconds + 60
        while len(delays) < count and time.monotonic() < deadline:
            for records in reader.poll(timeout_ms=200).values():
                now_ms = time.time() * 1000
                delays += [now_ms - int(dict(r.headers)["event_time_ms"]) for r in records]
                for r in records:  # split at the scoring time: event -> scored, scored -> read back
                    headers = dict(r.headers)
                    scored_ms = datetime.fromisoformat(headers["scored_at"].decode()).timestamp() * 1000
                    split.append((scored_ms - int(headers["event_time_ms"]), now_ms - scored_ms))
        cpu_after = process.cpu_times()
        sender.join()
    finally:
        stream.terminate()
        stream.wait(timeout=60)
        reader.close()
    delays_ms, split_ms = np.asarray(delays), np.asarray(split)

    def p(values: np.ndarray, q: float) -> float:
        return round(float(np.percentile(values, q)), 1)

    cpu_seconds = (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system)
    return {
        "events": len(delays_ms),
        "cpu_us_per_event": round(cpu_seconds / max(len(delays_ms), 1) * 1e6, 1),
        "p50_ms": p(delays_ms, 50),
        "p99_ms": p(delays_ms, 99),
        "to_scored_p50_ms": p(split_ms[:, 0], 50),
        "to_scored_p99_ms": p(split_ms[:, 0], 99),
        "scored_to_read_p50_ms": p(split_ms[:, 1], 50),
        "scored_to_read_p99_ms": p(split_ms[:, 1], 99),
    }


def exactly_once(fresh, scorer: Scorer, bootstrap: str, events: int, repeats: int, rate: float, seconds: float) -> dict:
    """At-least-once and exactly-once over the same events, alternated; then latency of each at ``rate``."""
    alo, eos = [], []
    for _ in range(repeats):
        alo.append(scorepipe_consumer(fresh("alo"), scorer, events))
        eos.append(
            scorepipe_consumer(fresh("eos").model_copy(update={"stream_guarantee": "exactly-once"}), scorer, events)
        )
    lat_alo = latency(settings_for(bootstrap, "latency-alo"), rate, seconds)
    lat_eos = latency(settings_for(bootstrap, "latency-eos", stream_guarantee="exactly-once"), rate, seconds)
    eos_settings = settings_for(bootstrap, "latency-eos-50", stream_guarantee="exactly-once")
    lat_eos_quick_reader = latency(eos_settings, rate, seconds, reader_wait_ms=50)
    return {
        "events": events,
        "at_least_once_events_per_s": round(max(alo)),
        "exactly_once_events_per_s": round(max(eos)),
        "ratio": round(max(eos) / max(alo), 3),
        "runs": {"at_least_once": [round(x) for x in alo], "exactly_once": [round(x) for x in eos]},
        "latency": {
            "rate": rate,
            "at_least_once": lat_alo,
            "exactly_once": lat_eos,
            "exactly_once_reader_fetch_wait_50ms": lat_eos_quick_reader,
        },
    }


def cpu_per_event(fresh, bootstrap: str, events: int, repeats: int, rate: float, seconds: float) -> dict:
    """Both guarantees with the compiled trees on and off: events/s at saturation, CPU per event at ``rate``.

    Saturation runs score in this process (the best of ``repeats`` alternated runs); the steady-rate
    runs start `scorepipe stream` with ``SCOREPIPE_COMPILED_TREES`` set accordingly.
    """
    scorers = {
        "compiled": Scorer.from_registry(registry(), options=ScorerOptions(threads=1)),
        "sklearn": Scorer.from_registry(registry(), options=ScorerOptions(compiled_trees=False, threads=1)),
    }
    assert scorers["compiled"].compiled_trees and not scorers["sklearn"].compiled_trees
    figures: dict = {}
    for guarantee in ("at-least-once", "exactly-once"):
        rates: dict[str, list[float]] = {name: [] for name in scorers}
        steady: dict[str, list[dict]] = {name: [] for name in scorers}
        for _ in range(repeats):
            for name, scorer in scorers.items():
                settings = fresh(f"cpu-{name}").model_copy(update={"stream_guarantee": guarantee})
                rates[name].append(scorepipe_consumer(settings, scorer, events))
                steady_settings = settings_for(  # topics of its own: no event of an earlier run is read
                    bootstrap,
                    f"cpu-{name}-{uuid.uuid4().hex[:6]}",
                    stream_guarantee=guarantee,
                    compiled_trees=name == "compiled",
                )
                steady[name].append(latency(steady_settings, rate, seconds))
        figures[guarantee] = {
            name: {
                "events_per_s": round(max(rates[name])),
                "runs_events_per_s": [round(x) for x in rates[name]],
                "at_rate": min(steady[name], key=lambda f: f["cpu_us_per_event"]),
                "runs_cpu_us_per_event": [f["cpu_us_per_event"] for f in steady[name]],
            }
            for name in scorers
        }
    return {"rate": rate, "events": events, **figures}


def print_cpu(figures: dict) -> None:
    for guarantee in ("at-least-once", "exactly-once"):
        by = figures[guarantee]
        compiled, naive_way = by["compiled"], by["sklearn"]
        for name, f in (("compiled trees", compiled), ("sklearn predict_proba", naive_way)):
            at = f["at_rate"]
            print(
                f"{guarantee}, {name}: {f['events_per_s']:,} events/s at saturation; at {figures['rate']:,.0f}/s "
                f"{at['cpu_us_per_event']} us CPU per event (runs {f['runs_cpu_us_per_event']}), "
                f"p50 {at['p50_ms']} ms, p99 {at['p99_ms']} ms"
            )
        print(
            f"  {guarantee}: CPU per event {at_ratio(compiled, naive_way):.2f}x the naive way's, "
            f"saturation {compiled['events_per_s'] / naive_way['events_per_s']:.2f}x"
        )
    print(json.dumps({"cpu_per_event": figures}))


def at_ratio(ours: dict, theirs: dict) -> float:
    return ours["at_rate"]["cpu_us_per_event"] / theirs["at_rate"]["cpu_us_per_event"]


def print_exactly_once(figures: dict) -> None:
    lat = figures["latency"]
    print(f"at-least-once stream consumer:                      {figures['at_least_once_events_per_s']:>8,} events/s")
    print(f"exactly-once stream consumer:                       {figures['exactly_once_events_per_s']:>8,} events/s")
    print(f"  ratio to at-least-once:                           {figures['ratio']:>8} (target >= 0.85)")
    for name in ("at_least_once", "exactly_once", "exactly_once_reader_fetch_wait_50ms"):
        f = lat[name]
        print(
            f"  latency at {lat['rate']:,.0f} events/s, {name.replace('_', '-')}: "
            f"p50 {f['p50_ms']} ms, p99 {f['p99_ms']} ms"
        )
    print(json.dumps({"exactly_once": figures}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--naive-events", type=int, default=2_000)
    parser.add_argument("--rate", type=float, default=2_000)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--batch-events", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3, help="alternated passthrough/scorepipe runs")
    parser.add_argument("--operate-events", type=int, default=50_000, help="events per run of the operate runs")
    parser.add_argument("--operate-repeats", type=int, default=3)
    parser.add_argument("--only-operate", action="store_true", help="run only the hot reload / shadow comparison")
    parser.add_argument("--skip-operate", action="store_true", help="skip the hot reload / shadow comparison")
    parser.add_argument("--only-exactly-once", action="store_true", help="run only exactly-once vs at-least-once")
    parser.add_argument("--skip-exactly-once", action="store_true", help="skip exactly-once vs at-least-once")
    parser.add_argument("--eos-events", type=int, default=50_000, help="events per run of the exactly-once runs")
    parser.add_argument("--only-cpu", action="store_true", help="only CPU per event and saturation, both guarantees")
    parser.add_argument("--cpu-rate", type=float, default=1_000, help="the steady rate of the CPU-per-event runs")
    parser.add_argument(
        "--only-latency", type=float, metavar="HALF_RATE", help="only the two latency runs, this as the half rate"
    )
    args = parser.parse_args()
    broker = None
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        broker = KafkaBroker(Path(tempfile.mkdtemp(prefix="bench-kafka-"))).start()
        bootstrap = broker.bootstrap_servers
    try:
        scorer = Scorer.from_registry(registry())
        base = settings_for(bootstrap, "bench", stream_batch_events=args.batch_events)
        ensure_topics(base, base.features_topic)
        produce(base, count=args.events, seed=123)
        assert count_messages(base, base.features_topic) == args.events

        def fresh(name: str) -> Settings:
            return base.model_copy(
                update={
                    "consumer_group": f"{name}-{uuid.uuid4().hex[:6]}",
                    "predictions_topic": f"{name}-out-{uuid.uuid4().hex[:6]}",
                    "dlq_topic": f"{name}-dlq-{uuid.uuid4().hex[:6]}",
                    "shadow_topic": f"{name}-shadow-{uuid.uuid4().hex[:6]}",
                }
            )

        if args.only_cpu:
            figures = cpu_per_event(
                fresh, bootstrap, min(args.eos_events, args.events), args.repeats, args.cpu_rate, args.seconds
            )
            print_cpu(figures)
            return
        if args.only_exactly_once:
            eos = exactly_once(
                fresh, scorer, bootstrap, min(args.eos_events, args.events), args.repeats, args.rate, args.seconds
            )
            print_exactly_once(eos)
            return
        if args.only_latency:
            lat = latency(settings_for(bootstrap, "latency"), args.rate, args.seconds)
            lat_half = latency(settings_for(bootstrap, "latency-half"), args.only_latency, args.seconds)
            print_latency(args.rate, lat, args.only_latency, lat_half)
            return
        ops = None
        if not args.skip_operate:
            events = min(args.operate_events, args.events)
            ops = operate(fresh, with_challenger(registry()), events, args.operate_repeats)
            print_operate(ops)
        if args.only_operate:
            print(json.dumps({"operate": ops}))
            return
        # Alternated and repeated: the two share the machine's noise, and the best of each is compared.
        limits, ours = [], []
        for _ in range(args.repeats):
            limits.append(passthrough(fresh("passthrough"), args.events))
            ours.append(scorepipe_consumer(fresh("scorepipe"), scorer, args.events))
        limit_eps, ours_eps = max(limits), max(ours)
        naive_eps = naive(fresh("naive"), scorer, args.naive_events)
        lat = latency(settings_for(bootstrap, "latency"), args.rate, args.seconds)
        half_rate = round(ours_eps / 2, -2)
        lat_half = latency(settings_for(bootstrap, "latency-half"), half_rate, args.seconds)
        eos = None
        if not args.skip_exactly_once:
            eos = exactly_once(
                fresh, scorer, bootstrap, min(args.eos_events, args.events), args.repeats, args.rate, args.seconds
            )
    finally:
        if broker is not None:
            broker.stop()
    results = {
        "events": args.events,
        "batch_events": args.batch_events,
        "passthrough_events_per_s": round(limit_eps),
        "scorepipe_events_per_s": round(ours_eps),
        "ratio_to_passthrough": round(ours_eps / limit_eps, 3),
        "naive_events_per_s": round(naive_eps, 1),
        "speedup_over_naive": round(ours_eps / naive_eps, 1),
        "runs": {"passthrough": [round(x) for x in limits], "scorepipe": [round(x) for x in ours]},
        "latency_at_rate": {"rate": args.rate, **lat},
        "latency_at_half_saturation": {"rate": half_rate, **lat_half},
        "operate": ops,
        "exactly_once": eos,
    }
    print(f"passthrough (consume + produce + commit, no model): {results['passthrough_events_per_s']:>8,} events/s")
    print(f"scorepipe stream consumer:                          {results['scorepipe_events_per_s']:>8,} events/s")
    print(f"ratio to passthrough:                               {results['ratio_to_passthrough']:>8} (target >= 0.85)")
    print(f"naive per-message consumer:                         {results['naive_events_per_s']:>8,} events/s")
    print(f"speedup over naive:                                 {results['speedup_over_naive']:>8}x (target >= 30)")
    print_latency(args.rate, lat, half_rate, lat_half)
    if ops is not None:
        print_operate(ops)
    if eos is not None:
        print_exactly_once(eos)
    print(json.dumps(results))


def print_latency(rate: float, lat: dict, half_rate: float, lat_half: dict) -> None:
    runs = ((f"{rate:,.0f} events/s", lat), (f"{half_rate:,.0f} events/s (half of saturation)", lat_half))
    for label, figures in runs:
        print(
            f"latency at {label}: p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms ({figures['events']:,} ev);"
            f" event -> scored p50 {figures['to_scored_p50_ms']} / p99 {figures['to_scored_p99_ms']} ms,"
            f" scored -> read p50 {figures['scored_to_read_p50_ms']} / p99 {figures['scored_to_read_p99_ms']} ms"
        )
    both = {"latency_at_rate": {"rate": rate, **lat}, "latency_at_half_saturation": {"rate": half_rate, **lat_half}}
    print(json.dumps(both))


def print_operate(ops: dict) -> None:
    print(f"pinned model (no reload check):                     {ops['pinned_events_per_s']:>8,} events/s")
    print(f"following champion (watcher, 1 s checks):           {ops['following_events_per_s']:>8,} events/s")
    print(f"  ratio to pinned:                                  {ops['following_ratio_to_pinned']:>8}")
    print(f"  watcher.current() per micro-batch:                {ops['current_call_ns']:>8} ns")
    print(f"following champion + shadow challenger:             {ops['shadow_events_per_s']:>8,} events/s")
    print(f"  ratio to without shadow:                          {ops['shadow_ratio_to_without']:>8}")


if __name__ == "__main__":
    main()
