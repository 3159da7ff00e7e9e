"""Rate limits per API key (or client address) with the ``limits`` library, shared by every worker.

``limits`` counts hits in a storage: ``memory://`` is one process's, and Redis, Memcached or MongoDB
(``SCOREPIPE_SERVE_RATE_LIMIT_STORAGE``) share counts across pods. Several uvicorn workers of one
server need a count they all see but have no such server, and ``limits`` offers no storage shared
between the processes of one host; ``SqliteStorage`` is that storage, written against ``limits``'
storage interface (the fixed-window counters its ``FixedWindowRateLimiter`` uses): one small SQLite
file beside the server's multiprocess metrics, each increment one short transaction.
"""

from __future__ import annotations

import hashlib
import logging
import math
import sqlite3
import threading
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse_many
from limits.storage import Storage, storage_from_string
from limits.strategies import FixedWindowRateLimiter

log = logging.getLogger("scorepipe.serve")


class SqliteStorage(Storage):
    """Fixed-window counters in one SQLite file, for the worker processes of one host (``sqlite:///path``)."""

    STORAGE_SCHEME = ["sqlite"]

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options: float | str | bool) -> None:
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        self.path = (uri or "").removeprefix("sqlite://")
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=5, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS hits (key TEXT PRIMARY KEY, count INTEGER, expires REAL)")

    @property
    def base_exceptions(self) -> type[Exception]:
        return sqlite3.Error

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute("SELECT count, expires FROM hits WHERE key = ?", (key,)).fetchone()
                count = amount if row is None or row[1] <= now else row[0] + amount
                expires = now + expiry if row is None or row[1] <= now else row[1]
                self._db.execute("INSERT OR REPLACE INTO hits VALUES (?, ?, ?)", (key, count, expires))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return int(count)

    def get(self, key: str) -> int:
        row = self._row(key)
        return int(row[0]) if row is not None and row[1] > time.time() else 0

    def get_expiry(self, key: str) -> float:
        row = self._row(key)
        return float(row[1]) if row is not None and row[1] > time.time() else time.time()

    def check(self) -> bool:
        try:
            self._row("")
        except sqlite3.Error:
            return False
        return True

    def reset(self) -> int | None:
        with self._lock:
            removed = self._db.execute("DELETE FROM hits").rowcount
        return int(removed)

    def clear(self, key: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM hits WHERE key = ?", (key,))

    def _row(self, key: str) -> tuple[int, float] | None:
        with self._lock:
            return self._db.execute("SELECT count, expires FROM hits WHERE key = ?", (key,)).fetchone()


@dataclass(frozen=True)
class Refusal:
    """A request over its limit: which limit, and when the client may try again."""

    limit: str
    retry_after: int


class RateLimiter:
    """The server's limits (``SCOREPIPE_SERVE_RATE_LIMIT``, e.g. ``100/second;2000/minute``) for each caller."""

    def __init__(self, limits: str, storage_uri: str) -> None:
        self.items: list[RateLimitItem] = parse_many(limits)
        self.limiter = FixedWindowRateLimiter(storage_from_string(storage_uri))
        self.blocking = not storage_uri.startswith("memory")  # a file or a server: not on the event loop
        self._failing_since: float | None = None

    def refuse(self, caller: str) -> Refusal | None:
        """Count one request of ``caller``; a ``Refusal`` if it is over any limit (then it is not counted further).

        A storage that fails lets requests through (a limit is protection, not the service itself),
        and says so in the log once a minute.
        """
        try:
            for item in self.items:
                if not self.limiter.hit(item, caller):
                    reset, _ = self.limiter.get_window_stats(item, caller)
                    return Refusal(str(item), max(1, math.ceil(reset - time.time())))
        except Exception as exc:  # noqa: BLE001 - whatever the storage raises, the request is served
            if self._failing_since is None or time.monotonic() - self._failing_since > 60:
                log.warning("rate limits not applied: the storage failed (%s: %s)", type(exc).__name__, exc)
                self._failing_since = time.monotonic()
        return None


def caller_of(api_key: str | None, client: str | None) -> str:
    """Whom a request counts against: its API key (hashed: never kept as given), else its address."""
    if api_key:
        return "key:" + hashlib.sha256(api_key.encode()).hexdigest()[:16]
    return f"addr:{client or 'unknown'}"
