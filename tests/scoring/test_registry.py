from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from scoring import IntegrityError, Registry, RegistryError
from scoring.bundle import MODEL_FILE, PROFILE_FILE, REFERENCE_FILE, SCHEMA_FILE


def test_versions_are_numbered_and_immutable(make_registry):
    registry = make_registry(versions=2)
    assert [v.version for v in registry.versions()] == [1, 2]
    model = Path(registry.root) / "versions" / "000002" / MODEL_FILE
    assert not os.stat(model).st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    assert registry.resolve("latest") == 2
    assert registry.resolve("v2") == registry.resolve("2") == 2


def test_load_verifies_and_returns_the_bundle(make_registry, bundle):
    loaded = make_registry().load("champion")
    assert loaded.version == 1
    assert loaded.bundle.schema == bundle.schema
    assert loaded.bundle.classes == bundle.classes
    assert len(loaded.bundle.reference) == len(bundle.reference)


def test_registration_stores_the_references_drift_profile(make_registry, bundle):
    registry = make_registry()
    assert PROFILE_FILE in registry.info(1).files
    profile = registry.load("champion").bundle.profile
    assert profile is not None and profile.rows == len(bundle.reference)
    amount = bundle.reference["amount"].dropna().to_numpy()
    assert np.array_equal(profile.numeric("amount").values, np.sort(amount))
    assert profile.categorical("channel").counts == bundle.reference["channel"].value_counts().to_dict()


@pytest.mark.parametrize("artifact", [MODEL_FILE, SCHEMA_FILE, REFERENCE_FILE, PROFILE_FILE])
def test_tampered_artifact_is_refused_before_unpickling(make_registry, artifact, monkeypatch):
    registry = make_registry()
    path = Path(registry.root) / "versions" / "000001" / artifact
    path.chmod(0o644)
    path.write_bytes(path.read_bytes() + b"tampered")
    unpickled = []
    monkeypatch.setattr("scoring.bundle.joblib.load", lambda *a, **k: unpickled.append(a))
    with pytest.raises(IntegrityError, match=f"refusing to load .*{artifact}.*sha256"):
        registry.load("champion")
    assert unpickled == []


def test_swapped_pickle_is_refused(make_registry, tmp_path):
    """A different, valid pickle in place of the registered one must not load either."""
    registry = make_registry(versions=2)
    first = Path(registry.root) / "versions" / "000001" / MODEL_FILE
    second = Path(registry.root) / "versions" / "000002" / MODEL_FILE
    first.chmod(0o644)
    first.write_bytes(second.read_bytes() + b"\0")
    with pytest.raises(IntegrityError):
        registry.load(1)
    assert registry.load(2).version == 2


def test_manifest_missing_a_hash_is_refused(make_registry):
    registry = make_registry()
    index = json.loads((Path(registry.root) / "index.json").read_text())
    del index["versions"]["1"]["files"][MODEL_FILE]
    (Path(registry.root) / "index.json").write_text(json.dumps(index))
    with pytest.raises(IntegrityError, match="lacks hashes"):
        registry.load(1)


def test_promote_and_rollback(make_registry):
    registry = make_registry(versions=3)
    assert registry.aliases() == {"champion": 1}
    assert registry.promote(2) == 1
    assert registry.promote("v3") == 2
    assert registry.promote(3, "challenger") is None
    assert registry.aliases() == {"champion": 3, "challenger": 3}
    assert registry.rollback("champion") == 2
    assert registry.rollback("champion") == 1
    with pytest.raises(RegistryError, match="no earlier version"):
        registry.rollback("champion")
    assert registry.info(1).aliases == ("champion",)


def test_unknown_references_name_what_exists(make_registry):
    registry = make_registry(versions=2)
    with pytest.raises(RegistryError, match="unknown model 'v9': versions are 1, 2"):
        registry.resolve("v9")
    with pytest.raises(RegistryError, match="points at no version"):
        registry.resolve("challenger")
    with pytest.raises(RegistryError, match="unknown alias"):
        registry.promote(1, "production")


def test_empty_registry_says_how_to_fix(tmp_path):
    with pytest.raises(RegistryError, match="scorepipe train"):
        Registry(tmp_path / "empty").load()


def test_concurrent_registrations_get_distinct_versions(make_registry, bundle):
    from concurrent.futures import ThreadPoolExecutor

    registry = make_registry(versions=0)
    with ThreadPoolExecutor(4) as pool:
        versions = list(pool.map(lambda _: registry.register(bundle), range(6)))
    assert sorted(versions) == [1, 2, 3, 4, 5, 6]
    assert [v.version for v in Registry(registry.root).versions()] == [1, 2, 3, 4, 5, 6]


def test_a_version_folder_orphaned_by_a_crash_does_not_block_registration(make_registry, bundle):
    registry = make_registry(versions=1)
    (Path(registry.root) / "versions" / "000002").mkdir()  # a writer died after the rename, before the index
    assert registry.register(bundle) == 3
    assert [v.version for v in registry.versions()] == [1, 3]
