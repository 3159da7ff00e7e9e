"""Logging scorepipe's work back to MLflow: trained models, and drift and performance reports as runs.

Nothing is logged unless a tracking URI is set (``MLFLOW_TRACKING_URI`` or
``SCOREPIPE_MLFLOW_TRACKING_URI``) and ``SCOREPIPE_MLFLOW_LOG`` is not false. The local registry
stays the record scorepipe serves from; MLflow gets the lineage teams look for beside their
models. A tracking server that fails is reported and never fails the training or the report.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy
import sklearn

from integrations.mlflow.client import mlflow_client, shown, tracking_uri
from integrations.mlflow.models import MLflowSource, fetch, outside_trusted
from integrations.mlflow.settings import MlflowSettings
from scoring.bundle import ModelBundle
from scoring.storage import as_location

log = logging.getLogger("scorepipe.mlflow")

MAX_PARAM_CHARS = 500  # MLflow refuses longer parameter values


@dataclass(frozen=True)
class LoggedModel:
    """What ``log_trained`` created: the run, and the registered version with its artifact digests."""

    run_id: str
    source: MLflowSource
    serialization: str
    url: str  # the run's page in the MLflow UI
    not_trusted: tuple[str, ...] = ()  # why it is cloudpickle: types skops would have had to trust

    def lineage(self) -> dict[str, Any]:
        """What the bundle records of its MLflow twin: the version, run and artifacts, and its reference rows."""
        return {**self.source.lineage(), "reference": "the holdout scorepipe train kept"}

    def saved_as(self) -> str:
        why = f" (skops would have to trust {', '.join(self.not_trusted)})" if self.not_trusted else ""
        return f"{self.serialization}{why}"


def log_trained(
    settings: MlflowSettings, bundle: ModelBundle, *, data_source: str, train_rows: int
) -> LoggedModel | None:
    """Log a trained bundle as an MLflow run (params, metrics, reference data, model) and register it.

    The model is saved as skops when it holds only scikit-learn, numpy and scipy types (what
    ``models import`` trusts), else as cloudpickle, which MLflow loads everywhere. The signature and
    the pip requirements are explicit: inferring requirements takes seconds and guesses. The bundle is
    not changed: add ``mlflow=logged.lineage()`` with ``bundle.with_info`` and register that with
    ``origin=logged.source.origin()``.
    """
    uri = tracking_uri(settings)
    if uri is None:
        return None
    try:
        logged = _log_trained(uri, settings, bundle, data_source=data_source, train_rows=train_rows)
    except Exception as exc:  # noqa: BLE001 - MLflow is where lineage goes, not what the model depends on
        log.warning("could not log the trained model to MLflow at %s: %s", shown(uri), _short(exc))
        return None
    return logged


def _log_trained(
    uri: str, settings: MlflowSettings, bundle: ModelBundle, *, data_source: str, train_rows: int
) -> LoggedModel:
    client = mlflow_client(uri)  # first: it sets the client defaults the fluent calls below read too
    import mlflow
    import mlflow.sklearn
    from mlflow.data.pandas_dataset import from_pandas
    from mlflow.models import infer_signature

    mlflow.set_tracking_uri(uri)  # the fluent API logs the model; this process logs only here
    experiment = mlflow.set_experiment(settings.mlflow_experiment)
    features = bundle.reference[bundle.schema.names]
    signature = infer_signature(features, bundle.pipeline.predict_proba(features.head(200)))
    serialization, trusted, foreign = _serialization(bundle.pipeline)
    requirements = [f"scikit-learn=={sklearn.__version__}", f"numpy=={np.__version__}", f"scipy=={scipy.__version__}"]
    requirements.append(_pinned("skops") if serialization == "skops" else _pinned("cloudpickle"))
    with mlflow.start_run(experiment_id=experiment.experiment_id, run_name="scorepipe train") as run:
        mlflow.set_tags({"scorepipe.kind": "train", "scorepipe.trainer": str(bundle.info.get("trainer"))})
        mlflow.log_params(_params(bundle, data_source, train_rows, settings))
        mlflow.log_metrics({k: float(v) for k, v in bundle.metrics.items()})
        with tempfile.TemporaryDirectory(prefix="scorepipe-reference-") as tmp:
            folder = Path(tmp)  # read back by integrations.mlflow.models.trained_here when this model is imported
            bundle.reference.to_parquet(folder / "reference.parquet")
            described = {"schema": bundle.schema.model_dump(mode="json"), "target": bundle.info.get("target")}
            (folder / "schema.json").write_text(json.dumps(described, indent=2))
            mlflow.log_artifacts(str(folder), artifact_path="scorepipe")
        if Path(data_source).exists() or data_source.startswith("s3://"):
            dataset = from_pandas(bundle.reference, source=data_source, targets=bundle.info.get("target"))
            mlflow.log_input(dataset, context="training")
        options: dict[str, Any] = {"serialization_format": serialization}
        if trusted:
            options["skops_trusted_types"] = trusted
        quiet = logging.getLogger("mlflow.sklearn")  # its cloudpickle caution: scorepipe says why
        level, quiet.level = quiet.level, logging.ERROR if serialization == "cloudpickle" else quiet.level
        try:
            info = mlflow.sklearn.log_model(
                bundle.pipeline,
                name="model",
                signature=signature,
                pip_requirements=requirements,
                registered_model_name=settings.mlflow_model_name,
                **options,
            )
        finally:
            quiet.setLevel(level)
    version = info.registered_model_version
    with tempfile.TemporaryDirectory(prefix="scorepipe-mlflow-") as tmp:
        source, _ = fetch(f"models:/{settings.mlflow_model_name}/{version}", client, uri, Path(tmp))
    log.info("logged run %s and registered MLflow %s v%s", run.info.run_id, settings.mlflow_model_name, version)
    url = f"{shown(uri).rstrip('/')}/#/experiments/{experiment.experiment_id}/runs/{run.info.run_id}"
    return LoggedModel(run.info.run_id, source, serialization, url, tuple(foreign))


def tag_version(
    settings: MlflowSettings, logged: LoggedModel, *, local_version: int, passed: bool, alias: str | None
) -> bool:
    """Tag the MLflow version with its scorepipe version and gate result; point ``alias`` at it. True if moved."""
    name, version = logged.source.name, logged.source.version
    try:
        client = mlflow_client(tracking_uri(settings))
        client.set_model_version_tag(name, version, "scorepipe.version", str(local_version))
        client.set_model_version_tag(name, version, "scorepipe.quality_gate", "passed" if passed else "failed")
        if alias:
            client.set_registered_model_alias(name, alias, version)
            return True
    except Exception as exc:  # noqa: BLE001 - as for logging: reported, never fatal
        log.warning("could not tag MLflow %s v%s: %s", name, version, _short(exc))
    return False


def _serialization(estimator: Any) -> tuple[str, list[str], list[str]]:
    """The format to save in: skops when every type it must trust is scikit-learn's, numpy's or scipy's."""
    import skops.io

    needed = skops.io.get_untrusted_types(data=skops.io.dumps(estimator))
    foreign = outside_trusted(needed)
    if not foreign:
        return "skops", needed, []
    return "cloudpickle", [], foreign


def _pinned(package: str) -> str:
    from importlib.metadata import version

    return f"{package}=={version(package)}"


def _params(bundle: ModelBundle, data_source: str, train_rows: int, settings: MlflowSettings) -> dict[str, str]:
    params: dict[str, Any] = {
        "data": data_source,
        "train_rows": train_rows,
        "target": bundle.info.get("target"),
        "features": ",".join(bundle.schema.names),
        "seed": settings.seed,
        "estimator": bundle.info.get("estimator"),
    }
    steps = getattr(bundle.pipeline, "steps", None)
    final = steps[-1][1] if steps else bundle.pipeline
    params |= {f"model.{k}": v for k, v in final.get_params(deep=False).items()}
    return {k: str(v)[:MAX_PARAM_CHARS] for k, v in params.items()}


@dataclass(frozen=True)
class ReportRun:
    """One finished drift or performance report, as it is logged: figures, files, and the version judged."""

    job: str  # drift-report or performance-report
    name: str
    verdict: str
    figures: Mapping[str, tuple[float, str]]
    files: list[str]
    model_version: int
    model_info: Mapping[str, Any] | None  # the version's provenance: its MLflow lineage ties the run to it


def log_report(settings: MlflowSettings, report: ReportRun) -> str | None:
    """Log one report's figures and files as a run tied to the model version it judged; the run id.

    A model that came from MLflow (imported, or logged by ``train``) is named in the run's tags,
    its registered version gets a tag pointing at the run, and the figures are logged against the
    version's MLflow 3 model id, so they appear beside the model in the MLflow UI.
    """
    uri = tracking_uri(settings)
    if uri is None:
        return None
    try:
        return _log_report(uri, settings, report)
    except Exception as exc:  # noqa: BLE001 - a report is written and pushed whether MLflow answers or not
        log.warning("could not log the %s to MLflow at %s: %s", report.job, shown(uri), _short(exc))
        return None


def _log_report(uri: str, settings: MlflowSettings, report: ReportRun) -> str:
    client = mlflow_client(uri)
    experiment = client.get_experiment_by_name(settings.mlflow_experiment)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(settings.mlflow_experiment)
    lineage = (report.model_info or {}).get("mlflow") or {}
    registered = lineage.get("model_name"), lineage.get("model_version")
    tags = {
        "scorepipe.kind": report.job,
        "scorepipe.model_version": str(report.model_version),
        "scorepipe.verdict": report.verdict,
    }
    model_id = None
    if all(registered):
        tags["scorepipe.mlflow_model"] = f"{registered[0]}/{registered[1]}"
        model_id = _model_id(client.get_model_version(*registered))
    run = client.create_run(experiment_id, run_name=f"{report.job} {report.name}", tags=tags)
    run_id = run.info.run_id
    for key, (value, _) in report.figures.items():
        client.log_metric(run_id, key.removeprefix("scorepipe_"), float(value), model_id=model_id)
    with tempfile.TemporaryDirectory(prefix="scorepipe-report-") as tmp:
        for file in report.files:
            where = as_location(file)
            local = Path(tmp) / where.name
            local.write_bytes(where.read_bytes())
            client.log_artifact(run_id, str(local), artifact_path="report")
    client.set_terminated(run_id)
    if all(registered):
        client.set_model_version_tag(*registered, f"scorepipe.last_{report.job.replace('-', '_')}_run", run_id)
    return run_id


def _model_id(version: Any) -> str | None:
    """The MLflow 3 logged-model id behind a registered version (its source is ``models:/m-...``)."""
    if getattr(version, "model_id", None):
        return str(version.model_id)
    source = str(getattr(version, "source", "") or "")
    return source.removeprefix("models:/") if source.startswith("models:/m-") else None


def _short(exc: Exception) -> str:
    text = getattr(exc, "message", None) or str(exc)
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"
