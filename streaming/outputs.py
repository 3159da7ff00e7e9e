"""A micro-batch's destinations, together: predictions, dead letters, the live window, the shadow's.

The loop adds a scored batch to them; a delivery guarantee flushes them into one acknowledgement
to wait on (the shadow's apart: its failures are counted, never holding back a commit).
"""

from __future__ import annotations

from collections.abc import Callable

from monitoring.metrics import ScoringMetrics
from scoring.live_window import LiveWindow
from scoring.watcher import ModelWatcher
from streaming.settings import StreamSettings
from streaming.shadow import ShadowScorer
from streaming.sinks import DeadLetterSink, PredictionSink, WindowSink
from streaming.transport.base import Delivery, Producer


class Outputs:
    """Every sink a batch is written to; the producer and the partition check are looked up at each send."""

    def __init__(
        self,
        settings: StreamSettings,
        producer: Callable[[], Producer],
        same_partition: Callable[[str], bool],
        *,
        live_window: LiveWindow | None,
        shadow: ModelWatcher | None,
        shadow_window: LiveWindow | None,
        metrics: ScoringMetrics,
    ) -> None:
        self.predictions = PredictionSink(producer, settings.predictions_topic, same_partition)
        self.dead_letters = DeadLetterSink(producer, settings.dlq_topic)
        self.window = WindowSink(live_window)
        self.shadow = (
            ShadowScorer(
                shadow,
                PredictionSink(producer, settings.shadow_topic, same_partition),
                WindowSink(shadow_window),
                metrics,
            )
            if shadow is not None
            else None
        )
        self.topics = [settings.predictions_topic] + ([settings.shadow_topic] if shadow is not None else [])

    def flush(self) -> tuple[Delivery, Delivery | None]:
        """What was sent since the last flush: the champion's results, and the shadow's (or None)."""
        results = self.predictions.flush() + self.dead_letters.flush()
        shadow = self.shadow.flush() if self.shadow is not None else None
        self.window.flush()
        return results, shadow

    def idle(self) -> None:
        """The loop polled nothing: the live windows write rows that have waited long enough."""
        self.window.idle()
        if self.shadow is not None:
            self.shadow.window.idle()

    def discard(self) -> None:
        """Forget what was sent since the last flush (its batch is read again)."""
        self.flush()

    def count_shadow_failures(self, shadow: Delivery | None) -> None:
        if shadow is not None and self.shadow is not None:
            self.shadow.count_failures(shadow)

    def close(self) -> None:
        self.window.close()
        if self.shadow is not None:
            self.shadow.close()
