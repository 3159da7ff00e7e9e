"""The stream scorer's loop: Kafka micro-batches through the shared ``Scorer``, delivered by a guarantee.

Each poll returns whatever is buffered (at most ``stream_batch_events``), and it is scored at
once: a quiet stream is scored event by event, a busy one in full batches, because events pile up
while the previous batch is scored. For each micro-batch: decode every event, score the decodable
ones as one frame, add one prediction per scored event to the predictions sink and every other
event, unchanged, to the dead-letter sink with the reason in its headers. Under a canary plan the
batch is split by key (``scoring.canary``) and each part scored by its arm's version, within the
same delivery. What happens next is the
delivery guarantee's (``streaming.delivery``): at least once, pipelined up to
``stream_max_in_flight`` batches with ordered commits; or exactly once, in transactions. The loop
knows neither, nor the Kafka client library (``streaming.transport``); it holds back fetching while
too many batches are in flight.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from monitoring.health import Health
from monitoring.live_drift import LiveDriftPublisher
from monitoring.metrics import ScoringMetrics
from scoring import Scorer, SinkError
from scoring.agreement import Agreement
from scoring.canary import CANARY, CHAMPION, canary_mask
from scoring.canary_models import CanaryModels
from scoring.layout import SHADOW_DIR
from scoring.live_window import LiveWindow
from scoring.watcher import FixedModel, ModelWatcher, model_origin
from streaming.delivery import GUARANTEES, Delivery, StreamParts
from streaming.outputs import Outputs
from streaming.polling import Poller
from streaming.readiness import StreamReadiness
from streaming.settings import StreamSettings
from streaming.stats import StreamStats
from streaming.transform import BatchTransform, ScoredBatch
from streaming.transport import Transport, transport_for
from streaming.transport.base import Record, TransportError

log = logging.getLogger("scorepipe.stream")
IDLE_POLL_MS = 500  # poll timeout with nothing in flight: joins and rebalances progress inside poll()
IN_FLIGHT_POLL_MS = 5  # poll timeout while acknowledgements are awaited
FRESH_POLL_MS = 2  # the extra poll for events that arrived while the last batch was scored


class StreamConsumer:
    """Scores the features topic into the predictions and dead-letter topics.

    ``models`` follows an alias (hot reload) or is one fixed ``Scorer``; ``shadow``, if given, is
    a challenger scored on the same frames, whose predictions go to the shadow topic and never
    touch the champion's path. ``settings.stream_guarantee`` chooses the delivery.
    """

    def __init__(
        self,
        settings: StreamSettings,
        models: Scorer | ModelWatcher | FixedModel,
        *,
        shadow: ModelWatcher | None = None,
        canary: CanaryModels | None = None,
        live_window: LiveWindow | None = None,
        shadow_window: LiveWindow | None = None,
        metrics: ScoringMetrics | None = None,
        health: Health | None = None,
        client_id: str = "scorepipe-stream",
        stopping: threading.Event | None = None,
        transport: Transport | None = None,
    ) -> None:
        self.settings = settings
        self.transport = transport or transport_for(settings)
        self.models = FixedModel(models) if isinstance(models, Scorer) else models
        self.shadow = shadow
        self.canary = canary
        self.metrics = metrics or ScoringMetrics()
        self.health = health or Health()
        self.stats = StreamStats()
        self._stopping = stopping or threading.Event()  # the entry point's, set by its signal handlers
        serving = self.models.current()
        if serving is None:
            raise SinkError(f"no model to score with for {self.models.ref!r}")
        self.transform = BatchTransform(serving.bundle.schema)
        self.metrics.set_model(
            self.models.ref,
            serving.version,
            small_frame_shortcut=serving.small_frame_shortcut,
            compiled_trees=serving.compiled_trees,
            origin=model_origin(serving.bundle.info),
        )
        if shadow is not None:
            self.metrics.set_model(shadow.ref, shadow.version)
        self.readiness = StreamReadiness(self.health, settings.kafka_bootstrap_servers, lambda: self.models.version)
        self.health.add_note("model", lambda: _refused_note(self.models))
        if shadow is not None:
            self.health.add_note("shadow", lambda: _refused_note(shadow))
        if canary is not None:
            self.health.add_note("canary", lambda: canary.last_error)
        self.consumer = self.transport.stream_consumer(settings, client_id)
        self.live_drift = settings.live_drift_window()
        self._drift_publisher = (
            LiveDriftPublisher(self.live_drift, self.metrics, interval=settings.live_drift_interval_seconds)
            if self.live_drift is not None
            else None
        )
        self.outputs = Outputs(
            settings,
            lambda: self.delivery.producer,
            lambda topic: self.delivery.same_partition_count(topic),
            live_window=live_window,
            shadow=shadow,
            shadow_window=shadow_window,
            metrics=self.metrics,
        )
        parts = StreamParts(
            settings,
            self.transport,
            self.consumer,
            self.outputs,
            self._process,
            stats=self.stats,
            metrics=self.metrics,
            readiness=self.readiness,
            stopping=self._stopping,
        )
        self.delivery: Delivery = GUARANTEES[settings.stream_guarantee](parts, client_id=client_id)
        self.consumer.subscribe([settings.features_topic], self.delivery.listener)
        self.poller = Poller(
            self.consumer,
            settings,
            settings.features_topic,
            self._stopping,
            on_unreachable=self.readiness.broker_unreachable,
        )

    @property
    def agreements(self) -> dict[tuple[int, int], Agreement]:
        """Champion/challenger agreement per version pair, over this process's life."""
        return self.outputs.shadow.agreements if self.outputs.shadow is not None else {}

    # -- lifecycle ---------------------------------------------------------------------------

    def stop(self, *_: object) -> None:
        """Ask the loop to finish the batch in hand, wait for acknowledgements, commit and return (signal-safe)."""
        self._stopping.set()

    def run(self, *, idle_exit_seconds: float | None = None, on_batch: Callable[[StreamStats], None] | None = None):
        """Consume until stopped (``stop()``, or the entry point's stop event) or idle for ``idle_exit_seconds``.

        Signal handlers, the collector and thread limits are the entry point's: see ``streaming.process``.
        """
        idle_since = time.monotonic()
        if self._drift_publisher is not None:
            self._drift_publisher.start()
        try:
            while not self._stopping.is_set():
                self.health.beat()
                self._hold_back_at_the_bound()
                mark = self.delivery.mark()
                records = self._poll()
                self.readiness.assigned = len(self.consumer.assignment())
                self._check_broker()  # every few seconds: reachability, lag, a lost commit
                if records:
                    self.delivery.send(records, mark)
                else:
                    self.outputs.idle()
                delivered = self.delivery.settle(polled_nothing=not records)
                if (records or delivered) and on_batch is not None:
                    on_batch(self.stats)
                if records or not self.readiness.assigned:
                    idle_since = time.monotonic()  # waiting for partitions is not being idle
                elif self._idle_for(idle_since, idle_exit_seconds):
                    if self._caught_up():
                        break
                    idle_since = time.monotonic()  # empty polls while events wait (a broker recovering)
            self.delivery.finish()
        finally:
            self.close()
        return self.stats

    def _idle_for(self, since: float, seconds: float | None) -> bool:
        """Nothing polled since ``since`` for ``seconds``, and no result still awaiting its acknowledgement."""
        return seconds is not None and not len(self.delivery.ledger) and time.monotonic() - since >= seconds

    def _caught_up(self) -> bool:
        """Nothing left to read on the assigned partitions, as the broker says: idle, not merely unanswered."""
        assigned = list(self.consumer.assignment())
        try:
            ends = self.consumer.end_offsets(assigned, timeout_ms=2000)
            return all(self.consumer.position(tp, timeout_ms=2000) >= end for tp, end in ends.items())
        except TransportError as exc:
            log.info("not stopping for idleness: cannot tell whether events wait (%s)", exc)
            return False

    def close(self) -> None:
        if self._drift_publisher is not None:
            self._drift_publisher.stop()
        self.outputs.close()
        self.delivery.close()
        self.consumer.close()  # leaves the group, so its partitions move at once
        self.models.stop()
        if self.canary is not None:
            self.canary.stop()

    # -- the loop ------------------------------------------------------------------------------

    def _check_broker(self) -> None:
        if not self.readiness.due():
            return
        if self.readiness.check_broker(self.consumer, self.delivery.ledger.positions, self.metrics):
            self.delivery.on_broker_answered()

    def _poll(self) -> list[Record]:
        """Whatever is buffered, at once (a partial batch never waits to fill)."""
        oldest = self.delivery.ledger.oldest()
        if oldest is None:
            timeout_ms = IDLE_POLL_MS  # wait for events: poll returns as soon as any arrive
        elif oldest.delivery.done():
            timeout_ms = 0  # acknowledged: go and commit it
        else:
            timeout_ms = IN_FLIGHT_POLL_MS  # acknowledgements awaited: look at them again soon
        limit = self.settings.stream_batch_events
        records = self.poller.poll(timeout_ms, limit)
        if records and len(records) < limit:
            if linger := self.settings.stream_linger_ms:
                # The client keeps fetching on its own threads while this one sleeps: what arrived
                # meanwhile joins the batch, without a poll per event.
                self._stopping.wait(linger / 1000)
            # What a poll returns was fetched while the previous batch was being scored: the client
            # asks for more only once its buffer is empty, i.e. now. One short extra poll takes the
            # events that arrived meanwhile, instead of leaving them a whole cycle for the next batch.
            records += self.poller.poll(FRESH_POLL_MS, limit - len(records))
        return records

    def _hold_back_at_the_bound(self) -> None:
        """Backpressure: pause fetching while ``stream_max_in_flight`` batches await delivery."""
        full = len(self.delivery.ledger) >= self.settings.stream_max_in_flight
        paused = self.consumer.paused()
        if full and not paused:
            self.consumer.pause(*self.consumer.assignment())
        elif not full and paused:
            self.consumer.resume(*paused)

    def _process(self, records: list[Record]) -> Callable[[], None]:
        """Score one batch into the outputs (split by arm under a canary); returns what counts it once delivered."""
        scorer = self.models.current()  # one version per arm for the whole batch, swapped only between batches
        assert scorer is not None
        split = self.canary.split() if self.canary is not None else None
        if split is not None:
            self.metrics.show_canary_weight(split.canary.version if split.canary else None, split.weight)
        if split is None or not split.active or split.canary is None:
            batches = [self._score(scorer, records)]
        else:
            to_canary = canary_mask([arm_key(r) for r in records], split.weight)
            batches = []
            if (~to_canary).any():
                batches.append(self._score(scorer, [r for r, take in zip(records, ~to_canary, strict=True) if take]))
            if to_canary.any():
                part = [r for r, take in zip(records, to_canary, strict=True) if take]
                batches.append(self._score_canary(split.canary, scorer, part))

        def account() -> None:
            for batch in batches:
                self.stats.account(batch, self.metrics)

        return account

    def _score_canary(self, canary: Scorer, champion: Scorer, records: list[Record]) -> ScoredBatch:
        """The canary's part; if the canary itself fails to score, the champion does and the canary is taken off.

        Only scoring is guarded: nothing of the part reached the outputs yet, so nothing is sent twice,
        and a refused send (an ACL) still reaches the delivery as it should.
        """
        try:
            with self.metrics.arm_seconds.labels(CANARY, str(canary.version)).time():
                batch = self.transform(canary, records, CANARY)
        except Exception as exc:  # noqa: BLE001 - a broken canary must not take the stream down, whatever it raises
            assert self.canary is not None
            self.canary.refuse(canary.version, f"{type(exc).__name__}: {exc}")
            self.metrics.arm_events.labels(CANARY, str(canary.version), "error").inc(len(records))
            batch = self._timed(champion, records, CHAMPION)
        return self._emit(batch)

    def _score(self, scorer: Scorer, records: list[Record], arm: str = CHAMPION) -> ScoredBatch:
        return self._emit(self._timed(scorer, records, arm))

    def _timed(self, scorer: Scorer, records: list[Record], arm: str) -> ScoredBatch:
        """Decoded and scored, the time it took kept by arm (the gate compares the arms' p95)."""
        with self.metrics.arm_seconds.labels(arm, str(scorer.version)).time():
            return self.transform(scorer, records, arm)

    def _emit(self, batch: ScoredBatch) -> ScoredBatch:
        """A scored part's results into the outputs: predictions, live window, shadow, dead letters."""
        scorer, arm = batch.scorer, batch.arm
        outputs = self.outputs
        if batch.accepted is not None and len(batch.kept):
            outputs.predictions.add(scorer, batch.kept, batch.accepted, arm)
            outputs.window.add(batch.accepted, batch.kept)
            if arm == CHAMPION and self.live_drift is not None:
                self.live_drift.observe(scorer, batch.accepted)  # measured off this loop
            if outputs.shadow is not None and arm == CHAMPION and batch.frame is not None:
                outputs.shadow.score(scorer, batch.frame[batch.valid], batch.accepted, batch.kept)
        for record, reason, stage in batch.dead:
            outputs.dead_letters.add(record, reason, stage)
            log.warning("dead letter %s[%d]@%d: %s", record.topic, record.partition, record.offset, reason)
        return batch


def score_stream(
    settings: StreamSettings, models: Scorer | ModelWatcher, *, shadow: ModelWatcher | None = None, **kwargs: Any
) -> StreamConsumer:
    """Build a consumer writing its live window under ``settings.live_dir`` (a shadow's under ``_shadow/``)."""

    def window(root: Any) -> LiveWindow:
        return LiveWindow(root, roll_rows=settings.live_window_rows, roll_seconds=settings.live_window_seconds)

    shadow_window = window(settings.live_dir / SHADOW_DIR) if shadow is not None else None
    return StreamConsumer(
        settings, models, shadow=shadow, live_window=window(settings.live_dir), shadow_window=shadow_window, **kwargs
    )


def _refused_note(models: ModelWatcher | FixedModel) -> str | None:
    """What ``/readyz`` says after a refused reload: the old version serves on, and why the new one did not."""
    if not models.last_error:
        return None
    return f"serving v{models.version}; {models.failures} reload(s) refused, the last: {models.last_error}"


def arm_key(record: Record) -> bytes:
    """What a record's arm is decided by: its key, else where it sits (the same on every read of it)."""
    return record.key if record.key is not None else f"{record.topic}/{record.partition}/{record.offset}".encode()
