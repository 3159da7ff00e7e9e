"""Events and errors by arm over an interval, from Prometheus or from the scorers' own ``/metrics``.

Both read the counter every scorer keeps, ``scorepipe_arm_events_total{arm, model_version, outcome}``
(outcome ``predicted``, ``rejected`` by the version's validation, ``error`` when it failed, and on the
stream ``undecodable``: not an event at all, the input's fault whichever arm meets it, so not counted
against either). With Prometheus the
interval's increase is asked for (``increase(...[Ns])``, summed over every scorer it scrapes);
without one, the controller reads each scorer's ``/metrics`` at the start of a step and again when
it judges it, and takes the difference (a restarted scorer's counter starts again from zero: its
current value is then the increase).

The arms' scoring time comes the same way, from the histogram ``scorepipe_arm_score_seconds{arm,
model_version}`` (one observation per part an arm scored): its buckets' increases over the interval,
and from them the p95, interpolated within a bucket as Prometheus's ``histogram_quantile`` does.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import httpx
from prometheus_client.parser import text_string_to_metric_families

from scoring.canary import CANARY, CHAMPION

METRIC = "scorepipe_arm_events"
TIMING = "scorepipe_arm_score_seconds"
FAILED_OUTCOMES = ("rejected", "error")
Totals = dict[tuple[str, str, str], float]  # (arm, model_version, outcome or bucket bound "le") -> count


class TrafficError(Exception):
    """The traffic figures could not be read (Prometheus or a scorer did not answer)."""


@dataclass(frozen=True)
class Reading:
    """The events counter and the timing histogram's buckets, as read once (or as risen over an interval)."""

    events: Totals = field(default_factory=dict)
    buckets: Totals = field(default_factory=dict)

    def since(self, before: Reading) -> Reading:
        return Reading(increase(self.events, before.events), increase(self.buckets, before.buckets))


@dataclass(frozen=True)
class ArmTraffic:
    """One interval's events and failed events of each arm (only the plan's two versions counted)."""

    scored: dict[str, float] = field(default_factory=dict)
    failed: dict[str, float] = field(default_factory=dict)

    def events(self, arm: str) -> float:
        return self.scored.get(arm, 0.0) + self.failed.get(arm, 0.0)

    def error_ratio(self, arm: str) -> float | None:
        total = self.events(arm)
        return self.failed.get(arm, 0.0) / total if total else None


def arm_traffic(totals: Totals, *, champion: int, canary: int) -> ArmTraffic:
    versions = {CHAMPION: str(champion), CANARY: str(canary)}
    scored: dict[str, float] = {}
    failed: dict[str, float] = {}
    for (arm, version, outcome), count in totals.items():
        if versions.get(arm) != version:
            continue
        if outcome not in ("predicted", *FAILED_OUTCOMES):
            continue
        into = failed if outcome in FAILED_OUTCOMES else scored
        into[arm] = into.get(arm, 0.0) + count
    return ArmTraffic(scored, failed)


def arm_buckets(buckets: Totals, arm: str, version: int) -> dict[float, float]:
    """One arm's cumulative bucket counts by upper bound (``+Inf`` included), for its plan version only."""
    return {float(le): count for (a, v, le), count in buckets.items() if a == arm and v == str(version)}


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """The ``q`` quantile of a histogram's cumulative buckets, as Prometheus's ``histogram_quantile`` computes it.

    Written here because the scorers' own pages have no PromQL to ask: the rank's bucket is found and
    the value interpolated linearly within it (from 0 for the first); a rank in the ``+Inf`` bucket
    gives the highest finite bound. None when nothing was observed.
    """
    bounds = sorted(buckets)
    if not bounds or bounds[-1] != float("inf") or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * ((rank - below) / (count - below) if count > below else 1.0)
        lower, below = bound, count
    return lower


def shown(url: str) -> str:
    """A URL without its credentials (user:password@), for messages that reach logs and the audit log."""
    return str(httpx.URL(url).copy_with(username=None, password=None))


def parse_reading(texts: Iterable[str]) -> Reading:
    """The counter's and the histogram's samples in Prometheus text exposition, summed over every page."""
    reading = Reading()
    for text in texts:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if family.name == METRIC and sample.name.endswith("_total"):
                    into, last = reading.events, sample.labels["outcome"]
                elif family.name == TIMING and sample.name.endswith("_bucket"):
                    into, last = reading.buckets, sample.labels["le"]
                else:
                    continue
                key = (sample.labels["arm"], sample.labels["model_version"], last)
                into[key] = into.get(key, 0.0) + float(sample.value)
    return reading


def increase(now: Totals, before: Totals) -> Totals:
    """Each counter's rise since ``before`` (a counter that went down was restarted: its value is the rise)."""
    return {key: value - before.get(key, 0.0) if value >= before.get(key, 0.0) else value for key, value in now.items()}


class ScrapedTraffic:
    """The scorers' own ``/metrics`` pages, read directly."""

    def __init__(self, urls: list[str], timeout: float = 5.0) -> None:
        if not urls:
            raise TrafficError("no /metrics URL to read traffic from (SCOREPIPE_CANARY_METRICS_URLS)")
        self.urls = urls
        self.timeout = timeout

    def read(self) -> Reading:
        texts = []
        for url in self.urls:
            try:
                response = httpx.get(url, timeout=self.timeout)
                response.raise_for_status()
            except httpx.HTTPError as exc:
                raise TrafficError(f"scorer metrics at {shown(url)}: {type(exc).__name__}") from exc
            texts.append(response.text)
        return parse_reading(texts)


class PrometheusTraffic:
    """Prometheus's view of every scorer it scrapes."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def over(self, seconds: float) -> Reading:
        """The counter's and the buckets' increase over the last ``seconds``, by arm and version."""
        window = max(1, round(seconds))
        events = self._query(f"sum by (arm, model_version, outcome) (increase({METRIC}_total[{window}s]))", "outcome")
        buckets = self._query(f"sum by (arm, model_version, le) (increase({TIMING}_bucket[{window}s]))", "le")
        return Reading(events, buckets)

    def _query(self, query: str, last: str) -> Totals:
        try:
            response = httpx.get(f"{self.url}/api/v1/query", params={"query": query}, timeout=self.timeout)
            response.raise_for_status()
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise TrafficError(f"Prometheus at {shown(self.url)}: {type(exc).__name__}") from exc
        if body.get("status") != "success":
            raise TrafficError(f"Prometheus at {shown(self.url)} refused the query: {body.get('error')}")
        totals: Totals = {}
        for series in body["data"]["result"]:
            labels = series["metric"]
            key = (labels.get("arm", ""), labels.get("model_version", ""), labels.get(last, ""))
            totals[key] = float(series["value"][1])
        return totals
