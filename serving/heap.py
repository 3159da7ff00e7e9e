"""The server's long-lived objects kept out of the garbage collector's full passes.

A loaded server holds about 180,000 container objects (the model, pandas, scikit-learn, the app)
that never become garbage, and a full collection walks every one: 70-80 ms measured, one pause a
request meets every few seconds under load, while each request's own objects are freed by their
reference counts. ``gc.freeze`` moves what is alive at start into a generation the collector
never scans, so its passes only walk what requests made (well under a millisecond). A swapped-in
model is new garbage-collected state: after a reload the heap is collected and frozen again, so an
old version in a reference cycle is freed rather than kept for good.
"""

from __future__ import annotations

import gc
import logging
import time

from scoring.watcher import ReloadEvent

log = logging.getLogger("scorepipe.serve")


def freeze_heap() -> None:
    """Collect what is garbage now, then keep everything alive out of later collections."""
    started = time.perf_counter()
    gc.unfreeze()  # what an earlier freeze kept out is scanned once more, so a dropped model is freed
    gc.collect()
    gc.freeze()
    log.debug("froze %d objects in %.0f ms", gc.get_freeze_count(), (time.perf_counter() - started) * 1000)


def refreeze_after_reload(event: ReloadEvent) -> None:
    """A watcher listener: after a new version is swapped in, the heap is collected and frozen again."""
    if event.ok:
        freeze_heap()
