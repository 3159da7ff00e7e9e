"""Models from an MLflow registry or run, imported as ordinary scorepipe bundles.

``models:/name@alias``, ``models:/name/3`` or ``runs:/<run_id>/<path>`` is downloaded through the
MLflow client, refused unless it is an sklearn-flavoured classifier, loaded (skops: only types from
scikit-learn, numpy and scipy are trusted; cloudpickle: trusted as the user's own registry's),
checked against its signature, and registered through the same path as ``models register``: sha256
manifest, quality gate, lineage (the MLflow URI, model name and version, run id, artifact digests).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from scoring import ModelBundle, ModelLoadError, SchemaError
from scoring.errors import ScoringError
from scoring.training import bundle_from_estimator

TRUSTED_MODULES = ("sklearn", "numpy", "scipy")  # the roots of the only types a skops file may hold
NUMERIC_TYPES = {"double", "float", "long", "integer", "boolean"}
TEXT_TYPES = {"string"}


class MLflowImportError(ScoringError):
    """Raised when an MLflow model cannot be imported: not found, not sklearn, untrusted, or mismatched."""


@dataclass(frozen=True)
class MLflowSource:
    """Where an imported model came from: recorded in the bundle's lineage."""

    uri: str
    name: str | None
    version: str | None
    run_id: str | None
    digests: dict[str, str]

    def lineage(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "model_name": self.name,
            "model_version": self.version,
            "run_id": self.run_id,
            "artifact_sha256": self.digests,
        }


def mlflow_client(tracking_uri: str | None) -> Any:
    """The one MLflow client factory: a tracking URI given, or ``MLFLOW_TRACKING_URI``."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def resolve(uri: str, client: Any) -> tuple[str | None, str | None, str | None]:
    """(model name, version, run id) of ``uri``; a registry URI is looked up, a run URI names its run."""
    from mlflow.exceptions import MlflowException

    try:
        if uri.startswith("models:/"):
            rest = uri.removeprefix("models:/")
            if "@" in rest:
                name, alias = rest.split("@", 1)
                found = client.get_model_version_by_alias(name, alias)
            else:
                name, _, version = rest.partition("/")
                found = client.get_model_version(name, version)
            return found.name, str(found.version), found.run_id
        if uri.startswith("runs:/"):
            return None, None, uri.removeprefix("runs:/").split("/", 1)[0]
    except MlflowException as exc:
        raise MLflowImportError(f"{uri}: {exc.message}") from None
    raise MLflowImportError(f"{uri}: expected models:/name@alias, models:/name/VERSION or runs:/RUN_ID/PATH")


def download(uri: str, tracking_uri: str | None, into: Path) -> Path:
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    try:
        return Path(download_artifacts(artifact_uri=uri, dst_path=str(into), tracking_uri=tracking_uri))
    except MlflowException as exc:
        raise MLflowImportError(f"{uri}: cannot download its artifacts: {exc.message}") from None


def load_sklearn(folder: Path, uri: str) -> tuple[Any, dict[str, Any]]:
    """The estimator in an MLflow model folder and its MLmodel description; only sklearn flavours pass."""
    import yaml

    mlmodel = folder / "MLmodel"
    if not mlmodel.exists():
        raise MLflowImportError(f"{uri}: no MLmodel file: not an MLflow model")
    description = yaml.safe_load(mlmodel.read_text())
    flavors = description.get("flavors", {})
    if "sklearn" not in flavors:
        raise MLflowImportError(
            f"{uri}: not an sklearn-flavoured model (flavors: {', '.join(sorted(flavors)) or 'none'}); "
            "scorepipe imports scikit-learn classifiers"
        )
    flavor = flavors["sklearn"]
    path = folder / flavor.get("pickled_model", "model.pkl")
    serialization = flavor.get("serialization_format", "cloudpickle")
    if serialization == "skops":
        return load_skops(path, uri), description
    if serialization in ("cloudpickle", "pickle"):
        import cloudpickle

        with path.open("rb") as handle:  # runs code when unpickled: trusted as the user's own registry
            return cloudpickle.load(handle), description
    raise MLflowImportError(f"{uri}: unknown sklearn serialization format {serialization!r}")


def load_skops(path: Path, uri: str) -> Any:
    """A skops file, refusing any type outside scikit-learn, numpy and scipy (named)."""
    import skops.io

    untrusted = skops.io.get_untrusted_types(file=str(path))
    foreign = [t for t in untrusted if t.split(".", 1)[0] not in TRUSTED_MODULES]
    if foreign:
        raise MLflowImportError(
            f"{uri}: the skops file holds types outside scikit-learn, numpy and scipy, which are not loaded: "
            + ", ".join(sorted(foreign))
        )
    return skops.io.load(str(path), trusted=untrusted)


def signature_features(description: dict[str, Any], uri: str) -> list[tuple[str, str, bool]] | None:
    """(name, MLflow type, required) per input column of the model's signature; None without one."""
    signature = description.get("signature") or {}
    inputs = signature.get("inputs")
    if not inputs:
        return None
    columns = json.loads(inputs) if isinstance(inputs, str) else inputs
    if any("name" not in c for c in columns):
        raise MLflowImportError(f"{uri}: its signature is a tensor signature; scorepipe needs named columns")
    return [(str(c["name"]), str(c.get("type", "")), bool(c.get("required", True))) for c in columns]


def check_reference(features: list[tuple[str, str, bool]], reference: pd.DataFrame, uri: str) -> None:
    """The reference data must hold every signature column, with a matching kind (numeric or text)."""
    problems = []
    for name, kind, _ in features:
        if name not in reference.columns:
            problems.append(f"{name}: in the model's signature, missing from the reference data")
        elif kind in NUMERIC_TYPES and not pd.api.types.is_numeric_dtype(reference[name]):
            problems.append(f"{name}: the signature says {kind}, the reference data holds {reference[name].dtype}")
        elif kind in TEXT_TYPES and pd.api.types.is_numeric_dtype(reference[name]):
            problems.append(f"{name}: the signature says string, the reference data holds {reference[name].dtype}")
    if problems:
        raise SchemaError(problems, where=f"reference data for {uri}")


def import_model(
    uri: str,
    reference: pd.DataFrame,
    *,
    target: str | None,
    tracking_uri: str | None = None,
    reference_rows: int = 5_000,
    seed: int = 42,
) -> tuple[ModelBundle, MLflowSource]:
    """Download, load, check and wrap the MLflow model at ``uri`` into a bundle (not yet registered)."""
    client = mlflow_client(tracking_uri)
    name, version, run_id = resolve(uri, client)
    with tempfile.TemporaryDirectory(prefix="scorepipe-mlflow-") as tmp:
        folder = download(uri, tracking_uri, Path(tmp))
        digests = {
            str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*"))
            if p.is_file()
        }
        estimator, description = load_sklearn(folder, uri)
    features = signature_features(description, uri)
    if features is not None:
        check_reference(features, reference, uri)
        reference = reference[[n for n, _, _ in features] + ([target] if target else [])]
    try:
        bundle = bundle_from_estimator(
            estimator, reference, target=target, reference_rows=reference_rows, seed=seed, source=uri
        )
    except ModelLoadError as exc:
        raise MLflowImportError(f"{uri}: {exc}") from None
    source = MLflowSource(uri=uri, name=name, version=version, run_id=run_id, digests=digests)
    bundle.info["mlflow"] = source.lineage()
    return bundle, source
