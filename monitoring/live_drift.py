"""Live drift as Prometheus gauges: a thread that measures the scorer's window every few seconds.

The scoring loop only hands batches to ``LiveDrift``; this thread sorts, counts and compares, so the
loop never waits on a drift statistic (NumPy's sorts release the GIL). A measurement that fails
is logged and counted, and the previous figures stay until the next one succeeds; a window with too
few recent rows (traffic stopped) shows no figure rather than a stale one.
"""

from __future__ import annotations

import logging
import threading

from monitoring.metrics import ScoringMetrics
from scoring.live_drift import LiveDrift

log = logging.getLogger("scorepipe.drift")


class LiveDriftPublisher:
    """Measures ``drift`` every ``interval`` seconds into ``metrics``' live drift gauges, until stopped."""

    def __init__(self, drift: LiveDrift, metrics: ScoringMetrics, *, interval: float) -> None:
        self.drift = drift
        self.metrics = metrics
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="live-drift", daemon=True)

    def start(self) -> LiveDriftPublisher:
        self._thread.start()
        return self

    def publish(self) -> bool:
        """Measure once now; True when the window held enough rows to be measured."""
        try:
            figures = self.drift.measure()
        except Exception:  # a failed measurement must never stop scoring; it is logged and counted
            log.exception("live drift measurement failed; the previous figures stay")
            self.metrics.live_drift_failures.inc()
            return False
        if figures is None:
            self.metrics.clear_live_drift()
            return False
        self.metrics.show_live_drift(figures)
        return True

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.publish()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
