"""Where a long-running scorer's model comes from: the seam between the watcher and a model store.

A ``ModelSource`` turns what the user wrote (``champion``, ``v3``, ``mlflow:models:/fraud@champion``)
into a version of the local registry, which is what every scorer loads and hash-verifies. The
watcher asks it three things:

- ``stamp()``: a cheap fingerprint that changes whenever the reference may name something new
  (the registry index's inode and size; the MLflow version an alias points at);
- ``target()``: what the reference names now (a local version, or an MLflow version);
- ``materialize(target)``: the local version holding it, importing it first if needed. Any check
  that refuses it raises ``ScoringError``; the watcher then keeps the old model and reports why.

Sources for other stores are named by a scheme prefix (``mlflow:``). The core knows none of them:
entry points pass the stores they offer (``integrations.stores.model_stores()``), each a factory
keyed by its prefix, so the core imports no store's client and loads no module by name.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import TYPE_CHECKING, Protocol

from scoring.errors import SettingsError
from scoring.registry import ALIASES, Registry

if TYPE_CHECKING:
    from scoring.bundle import ModelBundle
    from scoring.settings import CoreSettings


class ModelSource(Protocol):
    ref: str  # as the user wrote it
    follows: bool  # False for a pinned version: it is loaded once and never changes

    def stamp(self) -> Hashable: ...

    def target(self) -> Hashable: ...

    def materialize(self, target: Hashable, serving: ModelBundle | None) -> int: ...

    def describe(self, target: Hashable) -> str: ...


class RegistryRef:
    """An alias (``champion``, ``challenger``, ``latest``) or a version of the local registry."""

    def __init__(self, registry: Registry, ref: str | int) -> None:
        self.registry = registry
        self.ref = str(ref)
        self.follows = self.ref.strip() in (*ALIASES, "latest")

    def stamp(self) -> Hashable:
        return self.registry.index_stamp()

    def target(self) -> int:
        return self.registry.resolve(self.ref)

    def materialize(self, target: Hashable, serving: ModelBundle | None) -> int:
        assert isinstance(target, int)
        return target

    def describe(self, target: Hashable) -> str:
        return f"v{target}"


SourceFactory = Callable[[Registry, str, "CoreSettings | None"], ModelSource]
"""Builds the source for a reference with its store's prefix: (registry, reference as written, settings)."""


def open_source(
    registry: Registry,
    ref: str | int,
    settings: CoreSettings | None = None,
    stores: Mapping[str, SourceFactory] | None = None,
) -> ModelSource:
    """The source for ``ref``: a store of ``stores`` named by its prefix, else the local registry."""
    text = str(ref).strip()
    for prefix, make in (stores or {}).items():
        if text.startswith(prefix):
            return make(registry, text, settings)
    scheme, colon, _ = text.partition(":")
    if colon and scheme.isidentifier():  # no alias or version of the local registry has a colon
        offered = ", ".join(sorted(stores or {})) or "none"
        raise SettingsError(f"{text}: no model store {scheme + ':'!r} here (stores offered: {offered})")
    return RegistryRef(registry, text)


def resolve_once(
    registry: Registry,
    ref: str | int,
    settings: CoreSettings | None = None,
    stores: Mapping[str, SourceFactory] | None = None,
) -> int:
    """The local version ``ref`` names now, imported first if it lives in another store (for batch runs)."""
    source = open_source(registry, ref, settings, stores)
    source.stamp()
    return source.materialize(source.target(), None)
