"""The canary a long-running scorer splits traffic with, followed through the registry's plan.

``CanaryModels`` reads the plan whenever the registry index changes (checked every
``check_seconds`` on a daemon thread, as the champion's watcher does), loads the canary version it
names, verified like any version (hash-checked before unpickling, the champion's features, the
quality gate), and hands the caller, between batches, the canary's scorer and its weight. A
version that fails verification never takes an event: the weight stays 0 and ``last_error`` says
why (the stream's ``/readyz`` shows it). A plan that ends (promoted or aborted) sends every key back to the
champion alias, which the champion's watcher follows.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Hashable
from dataclasses import dataclass

from scoring.canary import CanaryPlan
from scoring.errors import IntegrityError, ScoringError
from scoring.registry import Registry
from scoring.schema import FeatureSchema
from scoring.scorer import ALL_VERIFIED, Scorer, ScorerOptions
from scoring.settings import CoreSettings
from scoring.watcher import FixedModel, ModelWatcher, feature_mismatch

log = logging.getLogger("scorepipe.models")
RETRY_LOAD_S = 30.0  # a canary that could not be read (not one found wanting) is tried again after this


def verify_canary(
    registry: Registry, version: int, schema: FeatureSchema, *, min_roc_auc: float | None, options: ScorerOptions
) -> Scorer:
    """The canary's scorer, or a ``ScoringError`` saying why it may not take traffic."""
    scorer = Scorer.from_registry(registry, version, options=options)  # hash-checked
    if reason := feature_mismatch(schema, scorer.bundle.schema):
        raise ScoringError(f"v{version} cannot score the champion's input: {reason}")
    auc = scorer.bundle.metrics.get("roc_auc")
    if min_roc_auc is not None and auc is not None and auc < min_roc_auc:
        raise ScoringError(f"v{version} fails the quality gate: holdout ROC AUC {auc:.4f} < {min_roc_auc}")
    return scorer


@dataclass(frozen=True)
class Split:
    """What one batch is scored with: the canary (None: everything to the champion) and its weight."""

    canary: Scorer | None
    weight: float
    plan: CanaryPlan | None

    @property
    def active(self) -> bool:
        return self.canary is not None and self.weight > 0


NO_SPLIT = Split(None, 0.0, None)


class CanaryModels:
    """Follows the registry's canary plan; ``split()`` is what the next batch is scored with."""

    def __init__(
        self,
        registry: Registry,
        schema: FeatureSchema,
        *,
        check_seconds: float = 1.0,
        min_roc_auc: float | None = None,
        options: ScorerOptions = ALL_VERIFIED,
    ) -> None:
        self.registry = registry
        self.schema = schema
        self.check_seconds = check_seconds
        self.min_roc_auc = min_roc_auc
        self.options = options
        self.last_error: str | None = None
        self._split = NO_SPLIT
        self._scorers: dict[int, Scorer] = {}
        self._refused: dict[int, float] = {}  # version -> when it may be tried again (inf: never)
        self._stamp: Hashable = object()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> CanaryModels:
        self.check_now()
        self._thread = threading.Thread(target=self._follow, name="watch-canary", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def split(self) -> Split:
        """The canary and weight for the next batch (one batch is scored under one split)."""
        return self._split

    def refuse(self, version: int, reason: str) -> None:
        """Take the canary off traffic in this process (it failed while scoring): every key to the champion."""
        self._refused[version] = float("inf")
        self._scorers.pop(version, None)
        self.last_error = f"canary v{version} taken off traffic: {reason}"
        log.error("%s; every key goes to the champion", self.last_error)
        self._split = Split(None, 0.0, self._split.plan)

    def check_now(self) -> None:
        """Read the plan if the index moved; load and verify a canary it names for the first time."""
        try:
            stamp = self.registry.index_stamp()
            if stamp == self._stamp:
                return
            plan = self.registry.canary()
        except ScoringError as exc:  # the registry is unreachable: the split in hand holds
            log.warning("canary: cannot read the plan (%s); keeping the current split", exc)
            return
        self._stamp = stamp
        if plan is None or not plan.active:
            if self._split.active:
                log.info("canary: plan %s; every key goes to the champion", plan.state if plan else "removed")
            self._split = Split(None, 0.0, plan)
            return
        scorer = self._scorer(plan.canary)
        if scorer is None:
            self._split = Split(None, 0.0, plan)
            return
        if self._split.canary is not scorer or self._split.weight != plan.weight:
            log.info("canary: v%d takes %.4g%% of keys", plan.canary, plan.weight)
        self._split = Split(scorer, plan.weight, plan)

    def _scorer(self, version: int) -> Scorer | None:
        if version in self._scorers:
            return self._scorers[version]
        if time.monotonic() < self._refused.get(version, float("-inf")):
            return None
        try:
            scorer = verify_canary(
                self.registry,
                version,
                self.schema,
                min_roc_auc=self.min_roc_auc,
                options=self.options,
            )
        except ScoringError as exc:
            # Found wanting (a hash, its features, the quality gate): never. Not readable now: again later.
            found_wanting = isinstance(exc, IntegrityError) or type(exc) is ScoringError
            self._refused[version] = float("inf") if found_wanting else time.monotonic() + RETRY_LOAD_S
            self._stamp = object()  # look at the plan again at the next check
            self.last_error = f"canary v{version} refused: {exc}"
            log.error("%s; every key goes to the champion", self.last_error)
            return None
        self._scorers = {version: scorer}  # one canary at a time: an earlier one is let go
        self.last_error = None
        return scorer

    def _follow(self) -> None:
        while not self._stop.wait(self.check_seconds):
            try:
                self.check_now()
            except Exception:  # noqa: BLE001 - the follower must outlive any surprise; the split in hand holds
                log.exception("canary: plan check failed")


def follow_canary(
    settings: CoreSettings, champion: ModelWatcher | FixedModel, *, threads: int | None = None
) -> CanaryModels | None:
    """A started follower of the registry's canary plan, where the champion alias is what is served (else None)."""
    if champion.ref != "champion" or not champion.follows:
        return None
    serving = champion.current()
    assert serving is not None  # the champion's watcher fails at start instead
    return CanaryModels(
        Registry(settings.registry_dir),
        serving.bundle.schema,
        check_seconds=settings.model_check_seconds,
        min_roc_auc=settings.min_roc_auc,
        options=dataclasses.replace(settings.scorer_options, threads=threads),
    ).start()
