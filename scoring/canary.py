"""Canary releases and A/B splits: the plan, and which arm a key meets.

A plan names a canary version, the champion it is measured against, and the share of traffic it
takes (``weight``, in percent). A fixed weight is an A/B experiment; a list of ``steps`` is a
rollout that a controller walks through. The plan lives in the registry index (written under the
registry's lock), so every long-running scorer picks up a new weight through the index it already
watches, with no restart.

Assignment is sticky: a key is hashed into one of ``BUCKETS`` buckets and keys in the buckets below
the weight go to the canary. One key therefore always meets one model while the weight holds, and
raising the weight only moves keys toward the canary. The hash is BLAKE2b (stdlib, C): uniform for
sequential ids, unlike a CRC, and computed only while a canary takes traffic.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np

from scoring.errors import RegistryError

BUCKETS = 10_000
CHAMPION, CANARY = "champion", "canary"
State = Literal["running", "promoted", "aborted"]


def bucket_of(key: bytes | str) -> int:
    """The key's bucket in ``0..BUCKETS-1`` (the same on every process, platform and run).

    >>> bucket_of(b"txn-1") == bucket_of("txn-1")
    True
    """
    data = key.encode() if isinstance(key, str) else key
    return int.from_bytes(hashlib.blake2b(data, digest_size=4).digest(), "big") % BUCKETS


def threshold(weight: float) -> int:
    """Buckets below this go to the canary: ``weight`` percent of ``BUCKETS``.

    >>> threshold(10), threshold(0), threshold(100), threshold(2.5)
    (1000, 0, 10000, 250)
    """
    return round(weight * BUCKETS / 100)


def canary_mask(keys: Sequence[bytes | str], weight: float) -> np.ndarray:
    """For each key, whether it meets the canary at ``weight`` percent."""
    below = threshold(weight)
    if below <= 0:
        return np.zeros(len(keys), dtype=bool)
    return np.fromiter((bucket_of(k) < below for k in keys), dtype=bool, count=len(keys))


@dataclass(frozen=True)
class CanaryPlan:
    """One canary release (or A/B split) and where it stands."""

    canary: int
    champion: int
    weight: float  # percent of keys the canary takes now
    steps: tuple[float, ...] = ()  # a rollout's weights, in order; empty: a fixed split (A/B)
    step: int = 0  # index into ``steps`` of the current weight
    interval_seconds: float = 600.0
    failure_limit: int = 2
    failures: int = 0
    state: State = "running"
    reason: str = ""
    started_at: str = field(default_factory=lambda: now())
    updated_at: str = field(default_factory=lambda: now())
    step_started_at: str = field(default_factory=lambda: now())  # when the current weight was set
    evaluated_at: str | None = None  # the controller's last judgement

    def __post_init__(self) -> None:
        if not 0 <= self.weight <= 100:
            raise RegistryError(f"canary weight {self.weight} is not a percentage (0-100)")
        if any(not 0 < s <= 100 for s in self.steps) or list(self.steps) != sorted(self.steps):
            raise RegistryError(f"canary steps {list(self.steps)} must rise, each in (0, 100]")
        if self.canary == self.champion:
            raise RegistryError(f"v{self.canary} is the champion already: nothing to compare it with")

    @property
    def active(self) -> bool:
        """Whether the canary takes traffic now."""
        return self.state == "running" and self.weight > 0

    @property
    def rollout(self) -> bool:
        return bool(self.steps)

    def arm_weight(self) -> float:
        """The canary's share now (0 once the plan has ended)."""
        return self.weight if self.state == "running" else 0.0

    def same_as(self, other: CanaryPlan) -> bool:
        """Whether ``other`` is this plan at the same point (nobody changed it in between)."""
        return (self.started_at, self.step, self.updated_at, self.state) == (
            other.started_at,
            other.step,
            other.updated_at,
            other.state,
        )

    def with_changes(self, **changes: Any) -> CanaryPlan:
        return replace(self, **changes, updated_at=now())

    def next_step(self) -> CanaryPlan | None:
        """The plan at its next step's weight (None after the last step)."""
        if self.step + 1 >= len(self.steps):
            return None
        return self.with_changes(step=self.step + 1, weight=self.steps[self.step + 1], step_started_at=now())

    def seconds_since(self, stamp: str | None) -> float:
        """Seconds from ``stamp`` (an ISO time of this plan) to now; infinity for None."""
        if stamp is None:
            return float("inf")
        return (datetime.now(UTC) - datetime.fromisoformat(stamp)).total_seconds()

    def due(self) -> bool:
        """Whether a rollout's interval has passed since its step began and since its last judgement."""
        return min(self.seconds_since(self.step_started_at), self.seconds_since(self.evaluated_at)) >= (
            self.interval_seconds
        )

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["steps"] = list(self.steps)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CanaryPlan:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**{**known, "steps": tuple(known.get("steps") or ())})


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")
