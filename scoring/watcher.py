"""Following an alias: long-running scorers pick up promotions and rollbacks without a restart.

A ``ModelWatcher`` holds the ``Scorer`` for whatever version an alias (``champion`` by default)
points at. A daemon thread notices when the registry index changes, loads and hash-verifies the
version the alias now names, checks that it can score what the caller feeds it, and leaves it
ready. The caller takes it with ``current()`` between micro-batches, so one batch is always
scored by exactly one version. A version that fails to load or to fit is refused: the old model
keeps serving and the failure is reported to the listeners. A pinned version never changes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from scoring.errors import ScoringError
from scoring.registry import ALIASES, Registry
from scoring.schema import FeatureSchema
from scoring.scorer import Scorer
from scoring.settings import Settings

log = logging.getLogger("scorepipe.models")


@dataclass(frozen=True)
class ReloadEvent:
    """One attempt to follow an alias to a new version: swapped in (``ok``) or refused, and why."""

    alias: str
    old_version: int | None
    new_version: int
    ok: bool
    reason: str | None = None
    small_frame_shortcut: bool | None = None  # of the version swapped in


# Returns why ``candidate`` cannot replace the serving model, or None if it can.
Compatibility = Callable[[Scorer], str | None]
ReloadListener = Callable[[ReloadEvent], None]


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


def is_alias(ref: str | int) -> bool:
    """True if ``ref`` names an alias to follow rather than one fixed version."""
    return str(ref).strip() in (*ALIASES, "latest")


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
        small_frame_shortcut: bool = True,
    ) -> None:
        self.registry = registry
        self.small_frame_shortcut = small_frame_shortcut
        self.ref = str(ref)
        self.required = required
        self.check_seconds = check_seconds
        self.follows = is_alias(ref)
        self.compatible = compatible
        self.listeners = list(listeners)
        self.reloads = 0
        self.failures = 0
        self.last_error: str | None = None
        self._serving: Scorer | None = None
        self._ready: Scorer | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._stamp: tuple[int, int, int] | str | None = None
        self._target: int | None = None  # the version last loaded or refused, so it is tried once

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> ModelWatcher:
        """Load the version the reference names now, then follow it in the background if it is an alias."""
        self._stamp = self.registry.index_stamp()
        try:
            version = self.registry.resolve(self.ref)
        except ScoringError:
            if self.required:
                raise
            version = None
        if version is not None:
            self._target = version
            try:
                self._serving = self._load(version)
            except ScoringError as exc:
                if self.required:
                    raise
                self._refuse(None, version, exc)
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
                    small_frame_shortcut=ready.small_frame_shortcut,
                )  # fmt: skip
                log.info("%s: now scoring with v%s (was %s)", self.ref, ready.version, _v(event.old_version))
                self._tell(event)
        return self._serving

    @property
    def version(self) -> int | None:
        return self._serving.version if self._serving is not None else None

    def check_now(self) -> None:
        """Look at the registry once; load the alias's version if it moved (the thread calls this)."""
        stamp = self.registry.index_stamp()
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            version = self.registry.resolve(self.ref)
        except ScoringError as exc:
            log.warning("%s: cannot resolve after a registry change: %s", self.ref, exc)
            return
        if version == self._target:
            return
        self._target = version
        old = self.version
        try:
            scorer = self._load(version)
        except ScoringError as exc:
            self._refuse(old, version, exc)
            return
        with self._lock:
            self._ready = scorer

    # -- internals ---------------------------------------------------------------------------

    def _follow(self) -> None:
        while not self._stop.wait(self.check_seconds):
            try:
                self.check_now()
            except Exception:  # noqa: BLE001 - the watcher must outlive any surprise; the old model serves on
                log.exception("%s: registry check failed", self.ref)

    def _load(self, version: int) -> Scorer:
        scorer = Scorer.from_registry(
            self.registry, version, small_frame_shortcut=self.small_frame_shortcut
        )  # hash-verified before anything is unpickled
        if self.compatible is not None and (reason := self.compatible(scorer)):
            raise ScoringError(f"v{version} cannot score this input: {reason}")
        return scorer

    def _refuse(self, old: int | None, version: int, exc: Exception) -> None:
        self.failures += 1
        self.last_error = f"v{version}: {exc}"
        log.error("%s: refused v%s, still scoring with %s: %s", self.ref, version, _v(old), exc)
        self._tell(ReloadEvent(self.ref, old, version, ok=False, reason=str(exc)))

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


def watch_models(
    settings: Settings,
    model: str | int = "champion",
    *,
    shadow: str | int | None = None,
    listeners: Iterable[ReloadListener] = (),
) -> tuple[ModelWatcher, ModelWatcher | None]:
    """Started watchers for every long-running entry point: the champion's (required) and a shadow's.

    Both refuse a version whose features differ from the champion's at start: clients and events
    are shaped for those fields, so a reload can change the model but never what it takes.
    """
    registry = Registry(settings.registry_dir)
    shortcut = settings.small_frame_shortcut
    models = ModelWatcher(
        registry, model, check_seconds=settings.model_check_seconds, listeners=listeners, small_frame_shortcut=shortcut
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
        small_frame_shortcut=shortcut,
    ).start()
    return models, challenger
