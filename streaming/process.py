"""Process-wide state of a long-running stream member, set by its entry point rather than by a class.

Signal handlers, the garbage collector and OpenMP's thread count belong to the process: a class
that set them would do so for every test and benchmark that builds one in-process.
"""

from __future__ import annotations

import gc
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


def stop_on_signals(stop: Callable[..., object]) -> None:
    """SIGTERM and SIGINT call ``stop``: installed first thing, since Kubernetes may send SIGTERM at any moment."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)


@contextmanager
def long_running_scorer() -> Iterator[None]:
    """One OpenMP thread for scoring, and what is loaded by now kept out of the collector's full passes.

    Micro-batches are small: one OpenMP thread scores them faster than two (no per-tree fork/join)
    and leaves the other core to the Kafka client's network threads. The model, the clients and the
    imports are long-lived: frozen, they no longer stall the loop for ~100 ms a few times a minute.
    """
    from threadpoolctl import threadpool_limits

    limits = threadpool_limits(limits=1, user_api="openmp")
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
        limits.restore_original_limits()
