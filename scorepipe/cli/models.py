"""``scorepipe train`` and ``scorepipe models``: fit, register, inspect, promote and roll back versions."""

from __future__ import annotations

import argparse
import io
from typing import TYPE_CHECKING

from scorepipe.render import console, print_metrics, print_schema, print_versions

if TYPE_CHECKING:
    from integrations.mlflow.tracking import LoggedModel
    from scorepipe.settings import Settings
    from scoring import Registry
    from scoring.bundle import ModelBundle


def cmd_train(args: argparse.Namespace, settings: Settings) -> int:
    from scoring import Registry, synthetic
    from scoring.sources import read_parquet
    from scoring.training import train_bundle

    registry = Registry(settings.registry_dir)
    if args.data:
        with console.status(f"reading {args.data}"):
            frame = read_parquet(args.data)
        target, bounds, source = args.target, None, str(args.data)
    else:
        with console.status(f"generating {args.rows:,} synthetic transactions"):
            frame = synthetic.generate(args.rows, seed=settings.seed)
        target, bounds, source = synthetic.TARGET, synthetic.BOUNDS, f"synthetic:{args.rows}:{settings.seed}"
    features = [c for c in frame.columns if c not in {target, synthetic.ID_COLUMN, *(args.ignore or [])}]
    with console.status(f"training on {len(frame):,} rows"):
        bundle = train_bundle(
            frame,
            target,
            features=features,
            bounds=bounds,
            reference_rows=settings.reference_rows,
            seed=settings.seed,
            source=source,
        )
    logged = _log_to_mlflow(settings, bundle, source, len(frame))
    origin = logged.source.origin() if logged else None
    if logged:
        bundle = bundle.with_info(mlflow=logged.lineage())
    version = registry.register(
        bundle, note=args.note or f"trained on {source}", origin=origin, trees=settings.tree_compiler()
    )
    print_metrics(version, bundle.metrics)
    code = _gate_and_promote(registry, version, bundle.metrics, settings, promote=not args.no_promote)
    if logged:
        _tag_in_mlflow(settings, logged, version, passed=code == 0, alias=args.mlflow_alias)
    return code


def _log_to_mlflow(settings: Settings, bundle: ModelBundle, source: str, rows: int) -> LoggedModel | None:
    """Log the run and register the model in MLflow when a tracking URI is set; its lineage goes in the bundle."""
    from integrations.mlflow.client import shown, tracking_uri
    from integrations.mlflow.tracking import log_trained

    if tracking_uri(settings) is None:
        return None
    with console.status(f"logging the run and the model to MLflow at {shown(settings.mlflow_tracking_uri)}"):
        logged = log_trained(settings, bundle, data_source=source, train_rows=rows)
    if logged is None:
        console.print("[yellow]not logged to MLflow (see the warning above); the model is registered here only[/]")
        return None
    console.print(
        f"MLflow: registered {logged.source.name} v{logged.source.version} (saved as {logged.saved_as()}); "
        f"run {logged.url}",
        soft_wrap=True,
    )
    return logged


def _tag_in_mlflow(settings: Settings, logged: LoggedModel, version: int, *, passed: bool, alias: str | None) -> None:
    """Tell MLflow which local version this is and whether it passed the gate; move ``alias`` there if it did."""
    from integrations.mlflow.tracking import tag_version

    moved = tag_version(settings, logged, local_version=version, passed=passed, alias=alias if passed else None)
    if alias and moved:
        console.print(f"MLflow alias {logged.source.name}@{alias} -> v{logged.source.version}")
    elif alias and not passed:
        console.print(f"[yellow]MLflow alias {alias} not moved: v{version} did not pass the quality gate[/]")


def cmd_models_register(args: argparse.Namespace, settings: Settings) -> int:
    import joblib

    from scoring import Registry
    from scoring.sources import read_parquet
    from scoring.storage import Location
    from scoring.training import bundle_from_estimator

    registry = Registry(settings.registry_dir)
    estimator = joblib.load(io.BytesIO(Location(args.model).read_bytes()))  # the user's own file, at their request
    reference = read_parquet(args.reference)
    bundle = bundle_from_estimator(
        estimator,
        reference,
        target=args.target,
        reference_rows=settings.reference_rows,
        seed=settings.seed,
        source=str(args.model),
    )
    version = registry.register(
        bundle, note=args.note or f"registered from {args.model}", trees=settings.tree_compiler()
    )
    return _promote_if_asked(registry, version, bundle.metrics, settings, args.alias)


def cmd_models_import(args: argparse.Namespace, settings: Settings) -> int:
    from integrations.mlflow.models import import_model
    from scoring import Registry
    from scoring.sources import read_parquet

    registry = Registry(settings.registry_dir)
    bundle, source = import_model(
        args.uri,
        read_parquet(args.reference) if args.reference else None,  # None: the run's logged dataset or example
        target=args.target,
        tracking_uri=args.tracking_uri or settings.mlflow_tracking_uri,
        reference_rows=settings.reference_rows,
        seed=settings.seed,
    )
    if args.target and bundle.info.get("target") is None:
        console.print(f"[yellow]the logged reference data has no {args.target!r} column: no metrics, no gate[/]")
    where = f"{source.name} v{source.version}" if source.name else f"run {source.run_id}"
    note = args.note or f"imported from MLflow {args.uri} ({where}; reference: {bundle.info['mlflow']['reference']})"
    version = registry.register(bundle, note=note, origin=source.origin(), trees=settings.tree_compiler())
    console.print(f"imported {args.uri} ({where}, run {source.run_id}) as v{version}", soft_wrap=True)
    return _promote_if_asked(registry, version, bundle.metrics, settings, args.alias)


def _promote_if_asked(registry: Registry, version: int, metrics: dict, settings: Settings, alias: str | None) -> int:
    """After registering a model of the user's: print its figures; promote to ``alias`` if asked (gated if labelled)."""
    print_metrics(version, metrics)
    if not alias:
        return 0
    if metrics:
        return _gate_and_promote(registry, version, metrics, settings, promote=True, alias=alias)
    registry.promote(version, alias)
    console.print(f"promoted v{version} to {alias} (no target given, so no quality gate)")
    return 0


def _gate_and_promote(
    registry: Registry, version: int, metrics: dict, settings: Settings, *, promote: bool, alias: str = "champion"
) -> int:
    from scoring import QualityGateError
    from scoring.training import check_quality_gate

    try:
        check_quality_gate(metrics, settings.min_roc_auc)
    except QualityGateError as exc:
        console.print(f"[yellow]v{version} registered but not promoted:[/] {exc}")
        return 3
    if promote:
        previous = registry.promote(version, alias)
        was = f" (was v{previous})" if previous else ""
        console.print(f"[green]v{version} passed the quality gate and is now {alias}{was}[/]")
    return 0


def cmd_models_list(args: argparse.Namespace, settings: Settings) -> int:
    from scoring import Registry

    registry = Registry(settings.registry_dir)
    print_versions(f"registry {settings.registry_dir}", registry.versions())
    return 0


def cmd_models_show(args: argparse.Namespace, settings: Settings) -> int:
    from scoring import Registry

    registry = Registry(settings.registry_dir)
    loaded = registry.load(args.ref)  # verifies every hash
    info = registry.info(loaded.version)
    bundle = loaded.bundle
    console.print(f"[bold]v{info.version}[/] {', '.join(info.aliases)} created {info.created_at}: {info.note}")
    console.print(f"estimator {bundle.info.get('estimator')}, classes {bundle.classes}, metrics {bundle.metrics}")
    print_schema(bundle.schema)
    for name, digest in info.files.items():
        console.print(f"  sha256 {digest}  {name}")
    return 0


def cmd_models_promote(args: argparse.Namespace, settings: Settings) -> int:
    from scoring import Registry

    registry = Registry(settings.registry_dir)
    version = registry.resolve(args.ref)
    previous = registry.promote(version, args.alias)
    console.print(f"{args.alias}: v{previous} -> v{version}" if previous else f"{args.alias}: v{version}")
    return 0


def cmd_models_rollback(args: argparse.Namespace, settings: Settings) -> int:
    from scoring import Registry

    registry = Registry(settings.registry_dir)
    before = registry.resolve(args.alias)
    after = registry.rollback(args.alias)
    console.print(f"{args.alias}: v{before} -> v{after} (rolled back)")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add this group's commands to the ``scorepipe`` parser."""
    train = commands.add_parser("train", help="fit, register and (if it passes the gate) promote a model")
    train.add_argument("--rows", type=int, default=100_000, help="synthetic rows when no --data is given")
    train.add_argument("--data", help="your own Parquet training data (a file, folder or glob; local or s3://)")
    train.add_argument("--target", help="label column of --data")
    train.add_argument(
        "--ignore",
        action="append",
        help="a column of --data that is not a feature (repeatable; transaction_id never is one)",
    )
    train.add_argument("--note", default="")
    train.add_argument("--no-promote", action="store_true", help="register only")
    train.add_argument(
        "--mlflow-alias", help="with MLflow logging: point this alias of the MLflow model at it if it passes the gate"
    )
    train.set_defaults(handler=cmd_train)

    models = commands.add_parser("models", help="manage the model registry").add_subparsers(title="models commands")
    listing = models.add_parser("list", help="registered versions and aliases")
    listing.set_defaults(handler=cmd_models_list)
    show = models.add_parser("show", help="one version's schema, metrics and hashes")
    show.add_argument("ref", nargs="?", default="champion")
    show.set_defaults(handler=cmd_models_show)
    promote = models.add_parser("promote", help="point an alias at a version")
    promote.add_argument("ref")
    promote.add_argument("--alias", default="champion", choices=["champion", "challenger"])
    promote.set_defaults(handler=cmd_models_promote)
    rollback = models.add_parser("rollback", help="point an alias back at its previous version")
    rollback.add_argument("--alias", default="champion", choices=["champion", "challenger"])
    rollback.set_defaults(handler=cmd_models_rollback)
    register = models.add_parser("register", help="register your own fitted sklearn classifier")
    register.add_argument("model", help="a joblib file holding a fitted estimator or pipeline (local or s3://)")
    register.add_argument("--reference", required=True, help="training features (Parquet; local or s3://)")
    register.add_argument("--target", help="label column in --reference, to compute metrics")
    register.add_argument("--alias", choices=["champion", "challenger"], help="promote after registering")
    register.add_argument("--note", default="")
    register.set_defaults(handler=cmd_models_register)

    importing = models.add_parser("import", help="import an sklearn model from MLflow (registry or run)")
    importing.add_argument("uri", help="models:/NAME@ALIAS, models:/NAME/VERSION or runs:/RUN_ID/PATH")
    importing.add_argument(
        "--reference",
        help="training features (Parquet; local or s3://), for schema and drift; default: the "
        "dataset logged with the run (mlflow.log_input), else the model's input example",
    )
    importing.add_argument("--target", help="label column in --reference, to compute metrics and gate")
    importing.add_argument("--alias", choices=["champion", "challenger"], help="promote after importing")
    importing.add_argument("--tracking-uri", help="default: MLFLOW_TRACKING_URI")
    importing.add_argument("--note", default="")
    importing.set_defaults(handler=cmd_models_import)
