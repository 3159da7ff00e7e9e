"""Helpers shared by test modules: waiting on conditions, stream processes, what a topic or group holds."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable

from scoring import Registry, Scorer, Settings
from streaming.topics import all_committed, committed_offsets, read_topic

POLL_S = 0.2  # how often a condition is looked at again: a polling interval, not a wait for time to pass


def wait_for(predicate: Callable[[], bool], *, timeout: float, what: str) -> None:
    """Return as soon as ``predicate()`` holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(POLL_S)


def stream_process(settings: Settings, *args: str) -> subprocess.Popen:
    """``scorepipe stream`` in a child process with these settings; its output is piped."""
    env = {**os.environ, **settings.as_env()}
    return subprocess.Popen(
        [sys.executable, "-m", "scorepipe.cli", "stream", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def scorer_for(settings: Settings) -> Scorer:
    return Scorer.from_registry(Registry(settings.registry_dir))


def committed_total(settings: Settings) -> int:
    """Sum of the group's committed offsets on the features topic: events handled for good."""
    return sum(committed_offsets(settings, settings.features_topic).values())


def everything_committed(settings: Settings) -> Callable[[], bool]:
    """A condition: the group committed every event now on the features topic (predicted or dead-lettered)."""
    return lambda: all_committed(settings)


def committed_at_least(settings: Settings, events: int) -> Callable[[], bool]:
    """A condition: the group committed at least ``events`` events of the features topic."""
    return lambda: committed_total(settings) >= events


def keys_on(settings: Settings, topic: str) -> list[str]:
    """Every message key on ``topic`` now, decoded, duplicates kept."""
    return [m.key.decode() for m in read_topic(settings, topic)]


def second_member_joins(settings: Settings, *, count: int, rate: float, seed: int) -> list[int]:
    """Events produced at ``rate`` to one member; a second joins after 1,500 commits. Both stop cleanly.

    Returns the events each member handled (the second's is checked to be more than none).
    """
    import signal
    import threading

    from streaming.producer import produce

    sender = threading.Thread(target=produce, args=(settings,), kwargs={"count": count, "rate": rate, "seed": seed})
    sender.start()
    first = stream_process(settings, "--client-id", "first")
    second = None
    try:
        wait_for(committed_at_least(settings, 1500), timeout=90, what="1,500 events committed")
        second = stream_process(settings, "--client-id", "second")
        sender.join()
        wait_for(everything_committed(settings), timeout=120, what="every event committed")
    finally:
        sender.join()
        for process in (first, second):
            if process is not None:
                process.send_signal(signal.SIGTERM)
    members = [p for p in (first, second) if p is not None]
    outputs = [p.communicate(timeout=60)[0] for p in members]
    assert [p.returncode for p in members] == [0, 0], outputs
    handled = [int(out.split("'events': ")[1].split(",")[0]) for out in outputs]
    assert handled[1] > 0, "the second member never received partitions"
    return handled
