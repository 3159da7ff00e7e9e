"""The model bundle: everything needed to score and to explain a model, saved as plain files.

A bundle folder holds ``model.joblib`` (the fitted pipeline, preprocessing included),
``schema.json``, ``bundle.json`` (classes, metrics, provenance) and ``reference.parquet``
(a sample of training features for drift), ``profile.parquet`` (that sample reduced to what drift
tests need, see ``scoring.profile``), and optionally ``trees.so`` (the trees compiled to native
code, see ``scoring.compiled``). Only the registry reads bundles back, because only
the registry knows the hashes the files must have.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import io
import json
from dataclasses import dataclass, field
from typing import Any

import joblib
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from scoring.errors import IntegrityError, ModelLoadError
from scoring.profile import ReferenceProfile
from scoring.schema import FeatureSchema
from scoring.storage import Location

MODEL_FILE = "model.joblib"
SCHEMA_FILE = "schema.json"
INFO_FILE = "bundle.json"
REFERENCE_FILE = "reference.parquet"
TREES_FILE = "trees.so"  # optional: the model's trees compiled to native code (scoring.compiled)
PROFILE_FILE = "profile.parquet"  # the reference's drift profile; versions stored before it have none
BUNDLE_FILES = (MODEL_FILE, SCHEMA_FILE, INFO_FILE, REFERENCE_FILE)


@dataclass(frozen=True)
class ModelBundle:
    """A fitted classifier with its schema, classes, metrics and training reference sample."""

    pipeline: Any
    schema: FeatureSchema
    classes: list[Any]
    metrics: dict[str, float]
    reference: pd.DataFrame
    info: dict[str, Any] = field(default_factory=dict)
    compiled_trees: bytes | None = field(default=None, repr=False)  # a shared library, verified before use
    profile: ReferenceProfile | None = field(default=None, repr=False)  # made from ``reference`` when saved

    def with_info(self, **entries: Any) -> ModelBundle:
        """A new bundle whose ``info`` also holds ``entries`` (lineage added after fitting): bundles never change."""
        return dataclasses.replace(self, info={**self.info, **entries})

    def __post_init__(self) -> None:
        if not hasattr(self.pipeline, "predict_proba"):
            raise ModelLoadError(f"{type(self.pipeline).__name__} has no predict_proba: scorepipe needs a classifier")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_bundle(bundle: ModelBundle, directory: Location) -> dict[str, str]:
    """Write the bundle's files into ``directory`` and return the sha256 of each, by file name."""
    directory.mkdir()
    buffer = io.BytesIO()
    joblib.dump(bundle.pipeline, buffer, compress=3)
    info = {"classes": _jsonable(bundle.classes), "metrics": bundle.metrics, "info": bundle.info}
    reference = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(bundle.reference, preserve_index=False), reference)
    payloads = {
        MODEL_FILE: buffer.getvalue(),
        SCHEMA_FILE: bundle.schema.model_dump_json(indent=2).encode(),
        INFO_FILE: json.dumps(info, indent=2, sort_keys=True).encode(),
        REFERENCE_FILE: reference.getvalue(),
    }
    if bundle.compiled_trees is not None:
        payloads[TREES_FILE] = bundle.compiled_trees
    profile = bundle.profile or ReferenceProfile.of_features(bundle.reference, bundle.schema)
    payloads[PROFILE_FILE] = profile.to_bytes()
    hashes = {}
    for name, data in payloads.items():
        (directory / name).write_bytes(data)
        hashes[name] = sha256_bytes(data)
    return hashes


def read_verified(path: Location, expected_sha256: str) -> bytes:
    """Read a file whole and return its bytes only if they hash to ``expected_sha256``.

    The bytes that were hashed are the bytes that get parsed, so a file swapped between the
    check and the load cannot slip through.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelLoadError(f"cannot read model artifact {path}: {exc}") from exc
    actual = sha256_bytes(data)
    if not hmac.compare_digest(actual, expected_sha256):
        raise IntegrityError(
            f"refusing to load {path}: sha256 is {actual}, but the registry manifest says {expected_sha256}; "
            "the artifact was modified after registration"
        )
    return data


def read_info(directory: Location, hashes: dict[str, str]) -> dict[str, Any]:
    """Only a bundle's provenance (``bundle.json``'s ``info``), hash-checked: no model is unpickled."""
    if INFO_FILE not in hashes:
        raise IntegrityError(f"manifest for {directory} lacks a hash for {INFO_FILE}")
    return dict(json.loads(read_verified(directory / INFO_FILE, hashes[INFO_FILE]))["info"])


def read_bundle(directory: Location, hashes: dict[str, str]) -> ModelBundle:
    """Read a bundle whose every file is first checked against ``hashes``; nothing is unpickled before."""
    missing = [name for name in BUNDLE_FILES if name not in hashes]
    if missing:
        raise IntegrityError(f"manifest for {directory} lacks hashes for {', '.join(missing)}")
    optional = [name for name in (TREES_FILE, PROFILE_FILE) if name in hashes]
    payloads = {name: read_verified(directory / name, hashes[name]) for name in (*BUNDLE_FILES, *optional)}
    try:
        pipeline = joblib.load(io.BytesIO(payloads[MODEL_FILE]))
    except Exception as exc:  # unpickling can raise anything; the artifact is what failed
        raise ModelLoadError(f"cannot unpickle {directory / MODEL_FILE}: {exc}") from exc
    schema = FeatureSchema.model_validate_json(payloads[SCHEMA_FILE])
    info = json.loads(payloads[INFO_FILE])
    reference = pq.read_table(io.BytesIO(payloads[REFERENCE_FILE])).to_pandas()
    return ModelBundle(
        pipeline=pipeline,
        schema=schema,
        classes=list(info["classes"]),
        metrics=info["metrics"],
        reference=reference,
        info=info["info"],
        compiled_trees=payloads.get(TREES_FILE),
        profile=ReferenceProfile.from_bytes(payloads[PROFILE_FILE], str(directory / PROFILE_FILE))
        if PROFILE_FILE in payloads
        else None,
    )


def _jsonable(values: list[Any]) -> list[Any]:
    return [v.item() if hasattr(v, "item") else v for v in values]
