"""The canary controller: judge each interval of a rollout, then take the next step, promote, or roll back.

As Argo Rollouts' analysis does: when a step's interval has passed, every check is run; all pass,
the next weight is set (after the last step the canary becomes champion, the old champion one
``scorepipe models rollback`` away); a check fails, the failure is counted and the step holds, and
at ``failure_limit`` failures the weight goes to 0 and the plan ends with the champion untouched;
a check waits (too few events, rows or labels), the step holds and the decision says why. Only
the holder of the registry's lease acts, and each change is refused if the lease was lost, so two
controllers never both act. Every judgement is appended to the registry's audit log with its figures.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from datetime import datetime
from typing import Any

import pandas as pd

from gate import checks
from gate.evidence import labelled, live_rows
from gate.settings import GateSettings
from gate.traffic import (
    PrometheusTraffic,
    Reading,
    ScrapedTraffic,
    TrafficError,
    arm_buckets,
    arm_traffic,
    quantile,
)
from monitoring.metrics import GateMetrics
from scoring import Registry, RegistryError, Scorer, ScoringError
from scoring.canary import CANARY, CHAMPION, CanaryPlan, now

log = logging.getLogger("scorepipe.gate")
POLL_SECONDS = 1.0


class CanaryController:
    """Acts on the registry's canary plan while it runs; ``judge`` is one interval's decision."""

    def __init__(
        self,
        settings: GateSettings,
        *,
        holder: str | None = None,
        metrics: GateMetrics | None = None,
        stopping: threading.Event | None = None,
    ) -> None:
        self.settings = settings
        self.registry = Registry(settings.registry_dir)
        self.holder = holder or f"controller-{uuid.uuid4().hex[:8]}"
        self.metrics = metrics or GateMetrics()
        self._stopping = stopping or threading.Event()
        self._prometheus = PrometheusTraffic(settings.canary_prometheus_url) if settings.canary_prometheus_url else None
        urls = [u.strip() for u in (settings.canary_metrics_urls or "").split(",") if u.strip()]
        self._scraped = ScrapedTraffic(urls) if urls and self._prometheus is None else None
        self._baseline: tuple[str, Reading] | None = None  # (step key, totals at its start): scraped traffic only
        self._lease_taken = float("-inf")  # when the lease was last taken or renewed (monotonic)
        self._scorers: dict[int, Scorer] = {}

    # -- the loop ----------------------------------------------------------------------------

    def run(self, *, poll_seconds: float = POLL_SECONDS, exit_when_ended: bool = True) -> CanaryPlan | None:
        """Act until the plan ends (or a stop); returns the plan as it was last seen.

        An error in one round (the registry or a source unreachable, a lease lost, a file being
        written) is logged and the next round tries again: the controller outlives it.
        """
        plan = None
        try:
            while not self._stopping.is_set():
                try:
                    plan = self._round()
                except (ScoringError, TrafficError, OSError, ValueError, KeyError) as exc:
                    log.error("canary: this round failed (%s: %s); trying again", type(exc).__name__, exc)
                if exit_when_ended and (plan is None or plan.state != "running"):
                    return plan
                self._stopping.wait(poll_seconds)
        finally:
            try:
                self.registry.release_canary_lease(self.holder)
            except ScoringError as exc:
                log.warning("could not release the canary lease (%s); it expires on its own", exc)
        return plan

    def stop(self, *_: object) -> None:
        self._stopping.set()

    def _round(self) -> CanaryPlan | None:
        """Read the plan; with the lease held (renewed every third of its life), judge a rollout that is due."""
        plan = self.registry.canary()
        if plan is not None:
            self.metrics.weight.labels(str(plan.canary)).set(plan.arm_weight())
            self.metrics.failures.set(plan.failures)
        if plan is None or plan.state != "running" or not plan.rollout:
            return plan  # an A/B split is compared by people, not judged: no lease, nothing to do
        if not self._hold_lease():
            log.debug("another controller holds the lease")
            return plan
        plan = self.registry.canary()  # as it is now that the lease is ours
        if plan is None or plan.state != "running":
            return plan
        self._start_baseline(plan)
        return self.judge(plan) if plan.due() else plan

    def _hold_lease(self, *, renew: bool = False) -> bool:
        now_s = time.monotonic()
        if not renew and now_s - self._lease_taken < self.settings.canary_lease_seconds / 3:
            return True
        held = self.registry.take_canary_lease(self.holder, self.settings.canary_lease_seconds)
        self._lease_taken = now_s if held else float("-inf")
        return held

    # -- one judgement -----------------------------------------------------------------------

    def judge(self, plan: CanaryPlan) -> CanaryPlan:
        """Run every check on this interval's evidence, decide, act on the plan and log the decision.

        The act is refused (``RegistryError``) if the lease was lost or the plan changed meanwhile.
        """
        found = self.run_checks(plan)
        if not self._hold_lease(renew=True):  # the checks took a while: act only while still the holder
            raise RegistryError(f"controller {self.holder} lost the canary lease while judging")
        verdict = checks.overall(found)
        decision: dict[str, Any] = {
            "time": now(),
            "controller": self.holder,
            "canary": plan.canary,
            "champion": plan.champion,
            "step": plan.step,
            "weight": plan.weight,
            "verdict": verdict,
            "checks": [c.to_json() for c in found],
        }
        if verdict == "pass" and (following := plan.next_step()) is not None:
            decision["action"] = "next_step"
            decision["reason"] = f"step {plan.step + 1} passed: weight {plan.weight:g}% -> {following.weight:g}%"
            result = self._act(plan, lambda p: p.next_step() or p, decision)
        elif verdict == "pass":
            decision["action"] = "promoted"
            decision["reason"] = f"every step passed: v{plan.canary} is champion (was v{plan.champion})"
            result = self.registry.promote_canary(
                decision["reason"], decision=decision, holder=self.holder, expected=plan
            )
        elif verdict == "fail" and plan.failures + 1 >= plan.failure_limit:
            failed = ", ".join(c.name for c in found if c.verdict == "fail")
            decision["action"] = "rolled_back"
            decision["reason"] = (
                f"{failed} failed ({plan.failures + 1} of {plan.failure_limit}): weight 0, champion kept"
            )
            result = self._act(
                plan,
                lambda p: p.with_changes(
                    state="aborted", weight=0.0, failures=p.failures + 1, reason=decision["reason"]
                ),
                decision,
            )
        else:
            failing = verdict == "fail"
            decision["action"] = "held"
            decision["reason"] = "; ".join(c.detail for c in found if c.verdict in ("fail", "wait"))
            result = self._act(
                plan,
                lambda p: p.with_changes(
                    evaluated_at=now(), failures=p.failures + failing, reason=f"{verdict}: {decision['reason']}"
                ),
                decision,
            )
        self.metrics.decisions.labels(verdict, decision["action"]).inc()
        self.metrics.weight.labels(str(result.canary)).set(result.arm_weight())
        log.info("canary v%d: %s, %s (%s)", plan.canary, verdict, decision["action"], decision["reason"])
        self._baseline = None  # the next interval's traffic starts now
        return result

    def run_checks(self, plan: CanaryPlan) -> list[checks.Check]:
        """Every check on the evidence of this interval (and, for labels, of the whole plan)."""
        s = self.settings
        found = self._traffic_checks(plan)
        versions = (plan.champion, plan.canary)
        since_step = datetime.fromisoformat(plan.step_started_at)
        rows = live_rows(s.live_dir, since=since_step, versions=set(versions))
        everything = live_rows(s.live_dir, since=datetime.fromisoformat(plan.started_at), versions=set(versions))
        if len(rows) and (rows["model_version"] == plan.champion).sum() < s.canary_min_events:
            # The canary takes (nearly) every key at this step: the champion's rows of the whole plan stand in.
            champion_rows = everything[everything["model_version"] == plan.champion] if len(everything) else everything
            rows = pd.concat([rows[rows["model_version"] == plan.canary], champion_rows], ignore_index=True)
        classes = self._scorer(plan.champion).bundle.classes
        names = [str(c) for c in classes]
        canary_rows = rows[rows["model_version"] == plan.canary] if len(rows) else rows
        found += checks.agreement(
            canary_rows,
            self._champion_scores(plan, canary_rows),
            names,
            min_agreement=s.canary_min_agreement,
            max_shift=s.canary_max_probability_shift,
            min_rows=s.canary_min_events,
        )
        found.append(
            checks.estimated_performance(
                rows, versions, names, max_drop=s.canary_max_estimated_auc_drop, min_rows=s.canary_min_events
            )
        )
        joined = None
        if s.canary_labels:
            joined = labelled(everything, s.canary_labels, list(classes)) if len(everything) else everything
        found.append(
            checks.labels(
                joined,
                versions,
                names,
                min_labels=s.canary_min_labels,
                waited_seconds=plan.seconds_since(plan.step_started_at),
                wait_limit=s.canary_label_wait_seconds,
                on_missing=s.canary_missing_labels,
                seed=s.seed,
            )
        )
        return found

    # -- internals ---------------------------------------------------------------------------

    def _act(self, plan: CanaryPlan, change: Any, decision: dict[str, Any]) -> CanaryPlan:
        return self.registry.update_canary(change, decision=decision, holder=self.holder, expected=plan)

    def _traffic_checks(self, plan: CanaryPlan) -> list[checks.Check]:
        """Failed events and p95 scoring time by arm, from the interval's counters."""
        s = self.settings
        try:
            reading = self._interval_reading(plan)
        except TrafficError as exc:
            missing = f"no traffic figures: {exc}"
            return [
                checks.Check("error_ratio", "wait", None, s.canary_max_error_ratio_increase, missing),
                checks.Check("latency_p95", "wait", None, s.canary_max_latency_ratio, missing),
            ]
        if reading is None:
            unset = "no traffic source (SCOREPIPE_CANARY_PROMETHEUS_URL or SCOREPIPE_CANARY_METRICS_URLS)"
            return [
                checks.Check("error_ratio", "skip", None, None, unset),
                checks.Check("latency_p95", "skip", None, None, unset),
            ]
        traffic = arm_traffic(reading.events, champion=plan.champion, canary=plan.canary)
        champion_buckets = arm_buckets(reading.buckets, CHAMPION, plan.champion)
        canary_buckets = arm_buckets(reading.buckets, CANARY, plan.canary)
        return [
            checks.error_ratio(
                (traffic.events(CHAMPION), traffic.failed.get(CHAMPION, 0.0)),
                (traffic.events(CANARY), traffic.failed.get(CANARY, 0.0)),
                min_events=s.canary_min_events,
                max_increase=s.canary_max_error_ratio_increase,
            ),
            checks.latency(
                quantile(0.95, champion_buckets),
                quantile(0.95, canary_buckets),
                canary_buckets.get(float("inf"), 0.0),
                min_parts=s.canary_min_latency_samples,
                max_ratio=s.canary_max_latency_ratio,
                slack_seconds=s.canary_latency_slack_seconds,
            ),
        ]

    def _interval_reading(self, plan: CanaryPlan) -> Reading | None:
        if self._prometheus is not None:
            since = max(plan.step_started_at, plan.evaluated_at or plan.step_started_at)
            return self._prometheus.over(plan.seconds_since(since))
        if self._scraped is None:
            return None
        current = self._scraped.read()
        if self._baseline is None or self._baseline[0] != _step_key(plan):
            raise TrafficError("the interval's first reading was taken only now (the controller started mid-step)")
        return current.since(self._baseline[1])

    def _start_baseline(self, plan: CanaryPlan) -> None:
        """With scraped traffic, the counters' values when this interval began."""
        if self._scraped is None or (self._baseline is not None and self._baseline[0] == _step_key(plan)):
            return
        try:
            self._baseline = (_step_key(plan), self._scraped.read())
        except TrafficError as exc:
            log.warning("canary: cannot read the scorers' metrics yet (%s)", exc)

    def _scorer(self, version: int) -> Scorer:
        if version not in self._scorers:
            self._scorers[version] = Scorer.from_registry(self.registry, version)  # hash-checked
        return self._scorers[version]

    def _champion_scores(self, plan: CanaryPlan, canary_rows: pd.DataFrame) -> pd.DataFrame | None:
        """The champion's scores for the canary's own rows: the same traffic, both models."""
        if len(canary_rows) == 0:
            return None
        champion = self._scorer(plan.champion)
        features = canary_rows[list(champion.bundle.schema.names)].reset_index(drop=True)
        return champion.score(features)


def _step_key(plan: CanaryPlan) -> str:
    return f"{plan.started_at}/{plan.step}/{plan.evaluated_at}"
