"""Models from an MLflow registry or run, imported as ordinary scorepipe bundles.

``models:/name@alias``, ``models:/name/3`` or ``runs:/<run_id>/<path>`` is downloaded through the
MLflow client, refused unless it is an sklearn-flavoured classifier, loaded (skops: only types from
scikit-learn, numpy and scipy are trusted; cloudpickle: trusted as the user's own registry's),
checked against its signature, and registered through the same path as ``models register``: sha256
manifest, quality gate, lineage (the MLflow URI, model name and version, run id, artifact digests).

``integrations.mlflow.source.MLflowAlias`` follows an alias with these same steps.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from integrations.mlflow.client import mlflow_client
from scoring.bundle import ModelBundle
from scoring.errors import ModelLoadError, SchemaError, ScoringError
from scoring.schema import FeatureSchema
from scoring.training import bundle_from_estimator

if TYPE_CHECKING:
    pass

log = logging.getLogger("scorepipe.models")

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

    def origin(self) -> dict[str, str | None]:
        """What the registry records to find this exact model again (one import per MLflow version)."""
        digest = hashlib.sha256(json.dumps(self.digests, sort_keys=True).encode()).hexdigest()
        return {"kind": "mlflow", "name": self.name, "version": self.version, "run_id": self.run_id, "digest": digest}

    def lineage(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "model_name": self.name,
            "model_version": self.version,
            "run_id": self.run_id,
            "artifact_sha256": self.digests,
        }


def unreachable(uri: str, exc: Exception) -> MLflowImportError:
    """An error naming the MLflow call that failed, without the client's retry traceback."""
    from mlflow.exceptions import MlflowException

    text = exc.message if isinstance(exc, MlflowException) else f"{type(exc).__name__}: {exc}"
    return MLflowImportError(f"{uri}: {text}")


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
    except (MlflowException, OSError) as exc:
        raise unreachable(uri, exc) from None
    raise MLflowImportError(f"{uri}: expected models:/name@alias, models:/name/VERSION or runs:/RUN_ID/PATH")


def download(uri: str, tracking_uri: str | None, into: Path) -> Path:
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    try:
        return Path(download_artifacts(artifact_uri=uri, dst_path=str(into), tracking_uri=tracking_uri))
    except (MlflowException, OSError) as exc:
        raise MLflowImportError(f"{uri}: cannot download its artifacts: {unreachable(uri, exc)}") from None


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


def outside_trusted(types: list[str]) -> list[str]:
    """The types skops reports that come from neither scikit-learn, numpy nor scipy.

    >>> outside_trusted(["sklearn.tree._tree.Tree", "numpy.dtype", "functools.partial"])
    ['functools.partial']
    """
    return [t for t in types if t.split(".", 1)[0] not in TRUSTED_MODULES]


def load_skops(path: Path, uri: str) -> Any:
    """A skops file, refusing any type outside scikit-learn, numpy and scipy (named)."""
    import skops.io

    untrusted = skops.io.get_untrusted_types(file=str(path))
    if foreign := outside_trusted(untrusted):
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


def logged_reference(
    client: Any, run_id: str | None, folder: Path, uri: str, tracking_uri: str | None
) -> tuple[pd.DataFrame, str]:
    """Reference rows logged with the model's run: a dataset whose source is readable, else the input example."""
    from mlflow.exceptions import MlflowException

    from scoring.sources import read_parquet

    inputs = []
    if run_id:
        try:
            inputs = list(client.get_run(run_id).inputs.dataset_inputs or [])
        except (MlflowException, OSError) as exc:
            raise unreachable(uri, exc) from None
    training_first = sorted(inputs, key=lambda i: not any(t.value == "training" for t in i.tags or []))
    for dataset_input in training_first:
        dataset = dataset_input.dataset
        try:
            where = str(json.loads(dataset.source).get("uri") or "")
        except (TypeError, ValueError):
            continue
        try:
            if where.endswith(".csv") and not where.startswith("s3://"):
                return pd.read_csv(where), f"dataset {dataset.name!r} ({where})"
            if where.endswith(".parquet") or where.startswith("s3://") or Path(where).is_dir():
                return read_parquet(where), f"dataset {dataset.name!r} ({where})"
        except (OSError, ScoringError) as exc:
            log.warning("%s: cannot read the logged dataset %s: %s", uri, where, exc)
    example = _input_example(folder)
    if example is not None:
        return example, f"the input example logged with the model ({len(example)} rows)"
    raise MLflowImportError(
        f"{uri}: no reference data: pass --reference FILE (the training features, Parquet), or log them with the "
        "run (mlflow.log_input(mlflow.data.from_pandas(frame, source=PATH))) or an input_example with the model"
    )


@dataclass(frozen=True)
class TrainedHere:
    """What ``scorepipe train`` logs beside a model it trained (``integrations.mlflow.tracking``): used as they are."""

    reference: pd.DataFrame
    schema: FeatureSchema
    target: str | None

    WHERE = "the reference rows scorepipe train logged with the run"


def trained_here(run_id: str | None, tracking_uri: str | None) -> TrainedHere | None:
    """The reference rows, feature schema and target ``scorepipe train`` stored with ``run_id``, if it did."""
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    if not run_id:
        return None
    with tempfile.TemporaryDirectory(prefix="scorepipe-reference-") as tmp:
        try:
            folder = Path(
                download_artifacts(run_id=run_id, artifact_path="scorepipe", dst_path=tmp, tracking_uri=tracking_uri)
            )
            described = json.loads((folder / "schema.json").read_text())
            reference = pd.read_parquet(folder / "reference.parquet")
        except (MlflowException, OSError, ValueError):
            return None
    return TrainedHere(reference, FeatureSchema.model_validate(described["schema"]), described.get("target"))


def _input_example(folder: Path) -> pd.DataFrame | None:
    from mlflow.models import Model

    try:
        example = Model.load(str(folder / "MLmodel")).load_input_example(str(folder))
    except (OSError, ValueError, KeyError):
        return None
    return example if isinstance(example, pd.DataFrame) and len(example) else None


def fetch(uri: str, client: Any, tracking_uri: str | None, into: Path) -> tuple[MLflowSource, Path]:
    """Resolve and download ``uri``; the source records the sha256 of every artifact."""
    name, version, run_id = resolve(uri, client)
    folder = download(uri, tracking_uri, into)
    digests = {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }
    return MLflowSource(uri=uri, name=name, version=version, run_id=run_id, digests=digests), folder


def build_bundle(
    folder: Path,
    source: MLflowSource,
    reference: pd.DataFrame,
    *,
    target: str | None,
    reference_from: str,
    schema: FeatureSchema | None = None,
    reference_rows: int = 5_000,
    seed: int = 42,
) -> ModelBundle:
    """Load the downloaded model, check its signature against ``reference``, and wrap it as a bundle.

    ``schema`` (what scorepipe's own training learned, bounds included) replaces the one that would
    be learned from ``reference``.
    """
    uri = source.uri
    estimator, description = load_sklearn(folder, uri)
    features = signature_features(description, uri)
    if features is not None:
        check_reference(features, reference, uri)
        reference = reference[[n for n, _, _ in features] + ([target] if target else [])]
    try:
        bundle = bundle_from_estimator(
            estimator, reference, target=target, reference_rows=reference_rows, seed=seed, source=uri, schema=schema
        )
    except ModelLoadError as exc:
        raise MLflowImportError(f"{uri}: {exc}") from None
    return bundle.with_info(mlflow={**source.lineage(), "reference": reference_from})


def import_model(
    uri: str,
    reference: pd.DataFrame | None,
    *,
    target: str | None,
    tracking_uri: str | None = None,
    reference_rows: int = 5_000,
    seed: int = 42,
) -> tuple[ModelBundle, MLflowSource]:
    """Download, load, check and wrap the MLflow model at ``uri`` into a bundle (not yet registered).

    Without ``reference`` the rows come from the run's logged dataset or the model's input example.
    """
    client = mlflow_client(tracking_uri)
    with tempfile.TemporaryDirectory(prefix="scorepipe-mlflow-") as tmp:
        source, folder = fetch(uri, client, tracking_uri, Path(tmp))
        ours = trained_here(source.run_id, tracking_uri)
        where = "the reference data given"
        if reference is None and ours is not None:
            reference, where, target = ours.reference, ours.WHERE, target or ours.target
        elif reference is None:
            reference, where = logged_reference(client, source.run_id, folder, uri, tracking_uri)
            log.info("%s: reference data from %s", uri, where)
            if target is not None and target not in reference.columns:
                target = None  # logged features rarely hold the label; no metrics then, said by the caller
        bundle = build_bundle(
            folder, source, reference, target=target, reference_from=where, schema=ours.schema if ours else None,
            reference_rows=reference_rows, seed=seed,
        )  # fmt: skip
    return bundle, source
