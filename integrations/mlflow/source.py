"""``mlflow:models:/NAME@ALIAS`` as a model source: the watcher follows an MLflow alias through it.

The watcher polls the alias (one cheap REST call) and, when it moves, the new version is imported
through the same checks as ``models import`` into the local registry, where it is hash-verified
like every bundle before it serves.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Hashable
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from integrations.mlflow.client import mlflow_client
from integrations.mlflow.models import (
    MLflowImportError,
    MLflowSource,
    TrainedHere,
    build_bundle,
    fetch,
    logged_reference,
    trained_here,
    unreachable,
)
from scoring.registry import Registry
from scoring.training import check_quality_gate

if TYPE_CHECKING:
    from integrations.mlflow.settings import MlflowSettings
    from scoring.bundle import ModelBundle

log = logging.getLogger("scorepipe.models")


class MLflowAlias:
    """The model source for ``mlflow:models:/NAME@ALIAS`` (followed), ``mlflow:models:/NAME/N`` or ``mlflow:runs:/...``.

    A new version is imported with the serving model's reference data and target (so it is checked
    and gated on the rows the old one was), registered once in the local registry with its MLflow
    origin, and loaded from there hash-verified. A version below the quality gate, with another
    signature or not loadable is refused; the watcher keeps the old one serving.
    """

    def __init__(self, registry: Registry, ref: str, settings: MlflowSettings | None) -> None:
        self.registry = registry
        self.ref = ref
        self.uri = ref.removeprefix("mlflow:")
        if not self.uri.startswith(("models:/", "runs:/")):
            raise MLflowImportError(
                f"{ref}: expected mlflow:models:/NAME@ALIAS, mlflow:models:/NAME/N or mlflow:runs:/ID/PATH"
            )
        rest = self.uri.removeprefix("models:/")
        self.follows = self.uri.startswith("models:/") and "@" in rest
        self.name, _, self.alias = rest.partition("@") if self.follows else (rest.split("/", 1)[0], "", "")
        self.tracking_uri = settings.mlflow_tracking_uri if settings else None
        self.min_roc_auc = settings.min_roc_auc if settings else None
        self.reference_rows = settings.reference_rows if settings else 5_000
        self.seed = settings.seed if settings else 42
        self.trees = settings.tree_compiler() if settings else None
        self.client = mlflow_client(self.tracking_uri)
        self._named: str | None = None
        self._runs: dict[str, str] = {}  # MLflow version -> its run id, as the alias lookups said

    def stamp(self) -> Hashable:
        if not self.follows:
            return self.uri
        from mlflow.exceptions import MlflowException

        try:
            found = self.client.get_model_version_by_alias(self.name, self.alias)
            self._named = str(found.version)
            self._runs[self._named] = found.run_id
        except (MlflowException, OSError) as exc:
            raise unreachable(self.uri, exc) from None
        return self._named

    def target(self) -> Hashable:
        return self._named if self.follows else self.uri

    def describe(self, target: Hashable) -> str:
        return f"MLflow {self.name} v{target}" if self.follows else f"MLflow {target}"

    def materialize(self, target: Hashable, serving: ModelBundle | None) -> int:
        uri = f"models:/{self.name}/{target}" if self.follows else str(target)
        run_id = self._runs.get(str(target)) if self.follows else None
        # A registered version never changes: one imported before is used again without a download.
        if run_id and (known := self.registry.find(kind="mlflow", name=self.name, version=str(target), run_id=run_id)):
            return known[0]
        with tempfile.TemporaryDirectory(prefix="scorepipe-mlflow-") as tmp:
            source, folder = fetch(uri, self.client, self.tracking_uri, Path(tmp))
            origin = source.origin()
            if known := self.registry.find(**origin):
                return known[0]
            ours = trained_here(source.run_id, self.tracking_uri)
            reference, label, where = self._reference(serving, source, folder, uri, ours)
            bundle = build_bundle(
                folder, source, reference, target=label, reference_from=where, schema=ours.schema if ours else None,
                reference_rows=self.reference_rows, seed=self.seed,
            )  # fmt: skip
        if bundle.metrics and self.min_roc_auc is not None:
            check_quality_gate(bundle.metrics, self.min_roc_auc)
        version = self.registry.register(
            bundle,
            note=f"imported from MLflow {uri} (following {self.uri}; reference: {where})",
            origin=origin,
            trees=self.trees,
        )
        log.info("%s: imported %s as v%s", self.ref, uri, version)
        return version

    def _reference(
        self, serving: ModelBundle | None, source: MLflowSource, folder: Path, uri: str, ours: TrainedHere | None
    ) -> tuple[pd.DataFrame, str | None, str]:
        """The rows to check and gate a new version on (the first there is).

        Its own, logged by scorepipe train; the serving model's; an earlier import's; those logged with the run.
        """
        if ours is not None:
            return ours.reference, ours.target, ours.WHERE
        if serving is not None:
            return serving.reference, serving.info.get("target"), "the serving model's"
        if earlier := self.registry.find(kind="mlflow", name=source.name):
            bundle = self.registry.load(earlier[-1]).bundle
            return bundle.reference, bundle.info.get("target"), f"v{earlier[-1]}'s"
        frame, where = logged_reference(self.client, source.run_id, folder, uri, self.tracking_uri)
        return frame, None, where
