"""Helpers shared by test modules: waiting on conditions, stream processes, what a topic or group holds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from scorepipe.settings import Settings
from scoring import Registry, Scorer
from streaming.topics import all_committed, assigned_partitions, committed_offsets, read_topic

T = TypeVar("T")

POLL_S = 0.2  # how often a condition is looked at again: a polling interval, not a wait for time to pass


def wait_for(predicate: Callable[[], T], *, timeout: float, what: str, interval: float = POLL_S) -> T:
    """Return ``predicate()``'s first truthy value; fail naming ``what`` after ``timeout`` seconds.

    The one polling loop of the suite: every wait on a condition has a deadline and says what it
    waited for when it runs out.
    """
    deadline = time.monotonic() + timeout
    while True:
        if value := predicate():
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def wait_for_value(check: Callable[[], T | None], *, timeout: float, what: str, interval: float = POLL_S) -> T:
    """:func:`wait_for` for a ``check`` that returns None until its value is there (a value that may be 0)."""
    found = wait_for(
        lambda: (value,) if (value := check()) is not None else None, timeout=timeout, what=what, interval=interval
    )
    return found[0]


def paused(pid: int, *, timeout: float = 10.0) -> None:
    """SIGSTOP ``pid``'s process group, and return once every thread of ``pid`` is stopped.

    ``killpg`` returns before the stop takes hold: on a busy machine a thread may run on (and answer
    a request) for a moment, so a test that asserts on a paused server waits for it.
    """
    os.killpg(pid, signal.SIGSTOP)

    def all_stopped() -> bool:
        tasks = Path(f"/proc/{pid}/task")
        states = [(task / "stat").read_text().rsplit(")", 1)[1].split()[0] for task in tasks.iterdir()]
        return all(state in ("T", "t") for state in states)

    wait_for(all_stopped, timeout=timeout, what=f"every thread of process {pid} to stop")


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


MOST_EVENTS = 100_000  # the feeder's bound, whatever happens to the members


def second_member_joins(settings: Settings, *, rate: float, seed: int, after_join: int) -> tuple[int, list[int]]:
    """Events fed at ``rate`` to one member; a second joins after 1,500 commits, mid-stream. Both stop cleanly.

    The premise is established, not assumed: events keep coming until the second member is seen holding
    partitions, then ``after_join`` more are sent, so both members share live traffic. Returns the number
    of events sent (the first of ``events(n, seed=seed)``) and the events each member handled.
    """
    import signal
    import threading

    from streaming.producer import events
    from streaming.transport import transport_for

    joined, stop, sent = threading.Event(), threading.Event(), [0]

    def feed() -> None:
        producer = transport_for(settings).producer(settings, linger_ms=10)
        started, after = time.monotonic(), 0
        try:
            for key, value, _ in events(MOST_EVENTS, seed=seed):
                if stop.is_set() or after >= after_join:
                    break
                producer.send(settings.features_topic, key=key, value=value)
                sent[0] += 1
                after += joined.is_set()
                ahead = sent[0] / rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
            producer.flush(timeout=60)
        finally:
            producer.close(timeout=10)

    feeder = threading.Thread(target=feed)
    feeder.start()
    first = stream_process(settings, "--client-id", "first")
    second = None
    try:
        wait_for(committed_at_least(settings, 1500), timeout=120, what="1,500 events committed")
        second = stream_process(settings, "--client-id", "second")
        wait_for(
            lambda: assigned_partitions(settings, member="second"),
            timeout=120,
            what="the second member to hold partitions in a stable group",
        )
        joined.set()
        feeder.join(timeout=after_join / rate + 120)
        assert not feeder.is_alive(), "the feeder never finished"
        wait_for(everything_committed(settings), timeout=120, what="every event committed")
    finally:
        stop.set()
        feeder.join()
        for process in (first, second):
            if process is not None:
                process.send_signal(signal.SIGTERM)
    members = [p for p in (first, second) if p is not None]
    outputs = [p.communicate(timeout=60)[0] for p in members]
    assert [p.returncode for p in members] == [0, 0], outputs
    handled = [int(out.split("'events': ")[1].split(",")[0]) for out in outputs]
    assert handled[1] > 0, "the second member handled no event"
    return sent[0], handled
