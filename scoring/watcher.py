"""Following an alias: long-running scorers pick up promotions and rollbacks without a restart.

A ``ModelWatcher`` holds the ``Scorer`` for whatever version an alias (``champion`` by default)
points at. A daemon thread notices when the alias's source changes (the local registry index, or
an MLflow alias: see ``scoring.model_source``), brings the version it now names into the local
registry, loads and hash-verifies it, checks that it can score what the caller feeds it, and
leaves it ready. The caller takes it with ``current()`` between micro-batches, so one batch is always
scored by exactly one version. A version that fails to load or to fit is refused: the old model
keeps serving and the failure is reported to the listeners. A pinned version never changes.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass

from scoring.errors import ScoringError
from scoring.model_source import ModelSource, RegistryRef, SourceFactory, open_source
from scoring.registry import Registry
from scoring.schema import FeatureSchema
from scoring.scorer import ALL_VERIFIED, Scorer, ScorerOptions
from scoring.settings import CoreSettings

log = logging.getLogger("scorepipe.models")


@dataclass(frozen=True)
class ReloadEvent:
    """One attempt to follow an alias to a new version: swapped in (``ok``) or refused, and why."""

    alias: str
    old_version: int | None
    new_version: int | None  # the local version; None when an import was refused before registering
    ok: bool
    reason: str | None = None
    small_frame_shortcut: bool | None = None  # of the version swapped in
    compiled_trees: bool | None = None  # of the version swapped in
    source_version: str | None = None  # what the source named, e.g. "v4" or "MLflow fraud v7"
    origin: str | None = None  # of the version swapped in: "local" or "mlflow:NAME/VERSION" (model_origin)


# Returns why ``candidate`` cannot replace the serving model, or None if it can.
Compatibility = Callable[[Scorer], str | None]
ReloadListener = Callable[[ReloadEvent], None]


def model_origin(info: dict) -> str:
    """Where a bundle's model came from, for the metrics: ``mlflow:NAME/VERSION`` if imported, else ``local``.

    >>> model_origin({"mlflow": {"model_name": "fraud", "model_version": "7"}}), model_origin({})
    ('mlflow:fraud/7', 'local')
    """
    lineage = info.get("mlflow") or {}
    if lineage.get("model_name") and lineage.get("model_version"):
        return f"mlflow:{lineage['model_name']}/{lineage['model_version']}"
    return "local"


def feature_mismatch(expected: FeatureSchema, candidate: FeatureSchema) -> str | None:
    """Why a model with ``candidate``'s features cannot score input shaped for ``expected`` (None: it can).

    >>> from scoring.schema import FeatureSpec
    >>> a = FeatureSchema(features=[FeatureSpec(name="x", kind="numeric")])
    >>> feature_mismatch(a, FeatureSchema(features=[FeatureSpec(name="y", kind="numeric")]))
    'features differ: needs y that the input lacks; input has x that the model does not take'
    """
    wanted = {f.name: f.kind for f in candidate.features}
    given = {f.name: f.kind for f in expected.features}
    problems = []
    if missing := [n for n in wanted if n not in given]:
        problems.append(f"needs {', '.join(missing)} that the input lacks")
    if extra := [n for n in given if n not in wanted]:
        problems.append(f"input has {', '.join(extra)} that the model does not take")
    if kinds := [f"{n} ({given[n]} -> {k})" for n, k in wanted.items() if n in given and given[n] != k]:
        problems.append(f"kinds changed: {', '.join(kinds)}")
    return f"features differ: {'; '.join(problems)}" if problems else None


class ModelWatcher:
    """The scorer for an alias, swapped between batches when the alias moves.

    ``required`` watchers (the champion) fail at start if nothing can be loaded; optional ones
    (a shadow challenger) serve ``None`` until their alias points at a loadable version.
    """

    def __init__(
        self,
        registry: Registry,
        ref: str | int = "champion",
        *,
        required: bool = True,
        check_seconds: float = 1.0,
        compatible: Compatibility | None = None,
        listeners: Iterable[ReloadListener] = (),
        options: ScorerOptions = ALL_VERIFIED,
        source: ModelSource | None = None,
    ) -> None:
        self.registry = registry
        self.source = source or RegistryRef(registry, ref)
        self.options = options
        self.ref = self.source.ref
        self.required = required
        self.check_seconds = check_seconds
        self.follows = self.source.follows
        self.compatible = compatible
        self.listeners = list(listeners)
        self.reloads = 0
        self.failures = 0
        self.last_error: str | None = None
        self._serving: Scorer | None = None
        self._ready: Scorer | None = None
        self._ready_from: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._stamp: Hashable = None
        self._target: Hashable = None  # what the source named when last loaded or refused: tried once
        self._stamp_error: str | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> ModelWatcher:
        """Load the version the reference names now, then follow it in the background if it is an alias."""
        try:
            self._stamp = self.source.stamp()
            target = self.source.target()
        except ScoringError:
            if self.required:
                raise
            target = None
        if target is not None:
            self._target = target
            try:
                self._serving = self._load(self.source.materialize(target, None))
            except ScoringError as exc:
                if self.required:
                    raise
                self._refuse(None, target, exc)
        if self.follows:
            self._thread = threading.Thread(target=self._follow, name=f"watch-{self.ref}", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    # -- serving -----------------------------------------------------------------------------

    def current(self) -> Scorer | None:
        """The scorer to use for the next batch: the newest verified version, swapped in now."""
        if self._ready is not None:
            with self._lock:
                ready, self._ready = self._ready, None
            if ready is not None:
                old = self._serving
                self._serving = ready
                self.reloads += 1
                event = ReloadEvent(
                    self.ref, old.version if old else None, ready.version, ok=True,
                    small_frame_shortcut=ready.small_frame_shortcut, compiled_trees=ready.compiled_trees,
                    source_version=self._ready_from,
                    origin=model_origin(ready.bundle.info),
                )  # fmt: skip
                log.info(
                    "%s: now scoring with v%s%s (was %s)", self.ref, ready.version,
                    _from(self._ready_from, ready.version), _v(event.old_version),
                )  # fmt: skip
                self._tell(event)
        return self._serving

    @property
    def version(self) -> int | None:
        return self._serving.version if self._serving is not None else None

    def check_now(self) -> None:
        """Look at the source once; load the version it names if that moved (the thread calls this)."""
        try:
            stamp = self.source.stamp()
        except ScoringError as exc:  # the store is unreachable: the old model serves on; say so once
            if str(exc) != self._stamp_error:
                log.warning("%s: cannot check for a new version (still scoring with %s): %s", self.ref,
                            _v(self.version), exc)  # fmt: skip
            self._stamp_error = str(exc)
            return
        if self._stamp_error is not None:
            log.info("%s: the model source answers again", self.ref)
            self._stamp_error = None
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            target = self.source.target()
        except ScoringError as exc:
            log.warning("%s: cannot resolve after a change: %s", self.ref, exc)
            return
        if target == self._target:
            return
        self._target = target
        old = self.version
        try:
            scorer = self._load(self.source.materialize(target, self._serving.bundle if self._serving else None))
        except ScoringError as exc:
            self._refuse(old, target, exc)
            return
        with self._lock:
            self._ready = scorer
            self._ready_from = self.source.describe(target)

    # -- internals ---------------------------------------------------------------------------

    def _follow(self) -> None:
        while not self._stop.wait(self.check_seconds):
            try:
                self.check_now()
            except Exception:  # noqa: BLE001 - the watcher must outlive any surprise; the old model serves on
                log.exception("%s: registry check failed", self.ref)

    def _load(self, version: int) -> Scorer:
        scorer = Scorer.from_registry(self.registry, version, options=self.options)  # hash-verified first
        if self.compatible is not None and (reason := self.compatible(scorer)):
            raise ScoringError(f"v{version} cannot score this input: {reason}")
        return scorer

    def _refuse(self, old: int | None, target: Hashable, exc: Exception) -> None:
        self.failures += 1
        named = self.source.describe(target)
        self.last_error = f"{named}: {exc}"
        log.error("%s: refused %s, still scoring with %s: %s", self.ref, named, _v(old), exc)
        local = target if isinstance(target, int) else None
        self._tell(ReloadEvent(self.ref, old, local, ok=False, reason=str(exc), source_version=named))

    def _tell(self, event: ReloadEvent) -> None:
        for listener in self.listeners:
            listener(event)


class FixedModel:
    """A scorer that never changes, with the watcher's interface (for callers that hold a Scorer)."""

    follows = False
    reloads = 0
    failures = 0
    last_error = None

    def __init__(self, scorer: Scorer, ref: str = "fixed") -> None:
        self.ref = ref
        self._scorer = scorer

    def current(self) -> Scorer:
        return self._scorer

    @property
    def version(self) -> int:
        return self._scorer.version

    def stop(self) -> None:
        return None


def _v(version: int | None) -> str:
    return "no model" if version is None else f"v{version}"


def _from(named: str | None, version: int) -> str:
    return "" if named is None or named == f"v{version}" else f" ({named})"


def watch_models(
    settings: CoreSettings,
    model: str | int = "champion",
    *,
    shadow: str | int | None = None,
    listeners: Iterable[ReloadListener] = (),
    stores: Mapping[str, SourceFactory] | None = None,
    threads: int | None = None,
) -> tuple[ModelWatcher, ModelWatcher | None]:
    """Started watchers for every long-running entry point: the champion's (required) and a shadow's.

    ``stores`` are the model stores the entry point offers besides the local registry (by prefix).
    ``threads``: the OpenMP threads the entry point scores on (``ScorerOptions.threads``).

    Both refuse a version whose features differ from the champion's at start: clients and events
    are shaped for those fields, so a reload can change the model but never what it takes.
    """
    registry = Registry(settings.registry_dir)
    options = dataclasses.replace(settings.scorer_options, threads=threads)
    models = ModelWatcher(
        registry,
        model,
        check_seconds=settings.model_check_seconds,
        listeners=listeners,
        options=options,
        source=open_source(registry, model, settings, stores),
    ).start()
    serving = models.current()
    assert serving is not None  # a required watcher fails at start instead
    schema = serving.bundle.schema

    def compatible(candidate: Scorer) -> str | None:
        return feature_mismatch(schema, candidate.bundle.schema)

    models.compatible = compatible
    if shadow is None:
        return models, None
    challenger = ModelWatcher(
        registry,
        shadow,
        required=False,
        check_seconds=settings.model_check_seconds,
        compatible=compatible,
        listeners=listeners,
        options=options,
        source=open_source(registry, shadow, settings, stores),
    ).start()
    return models, challenger
