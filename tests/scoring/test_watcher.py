"""Following an alias: swaps between batches, refusals keep the old model, pinned versions stay put."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from scoring import IntegrityError, ScoringError
from scoring.bundle import MODEL_FILE
from scoring.model_source import RegistryRef
from scoring.schema import FeatureSchema, FeatureSpec
from scoring.watcher import ModelWatcher, feature_mismatch
from tests.helpers import wait_for


def tamper(registry, version):
    path = Path(registry.root) / "versions" / f"{version:06d}" / MODEL_FILE
    path.chmod(0o644)
    path.write_bytes(path.read_bytes() + b"tampered")


def test_a_promotion_is_loaded_in_the_background_and_swapped_in_by_current(make_registry):
    registry = make_registry(versions=2)
    events = []
    watcher = ModelWatcher(registry, "champion", check_seconds=3600, listeners=[events.append]).start()
    try:
        first = watcher.current()
        assert first.version == 1 and watcher.follows
        registry.promote(2)
        assert watcher.current() is first  # nothing changes until the registry is checked
        watcher.check_now()
        assert watcher.version == 1  # loaded, but not swapped in until the caller asks for the next batch
        assert watcher.current().version == 2 and watcher.version == 2
        assert [(e.old_version, e.new_version, e.ok) for e in events] == [(1, 2, True)]
        registry.rollback()
        watcher.check_now()
        assert watcher.current().version == 1 and watcher.reloads == 2
    finally:
        watcher.stop()


def test_a_tampered_version_is_refused_and_the_old_one_keeps_serving(make_registry):
    registry = make_registry(versions=2)
    tamper(registry, 2)
    events = []
    watcher = ModelWatcher(registry, check_seconds=3600, listeners=[events.append]).start()
    registry.promote(2)
    watcher.check_now()
    watcher.check_now()  # the same refused version is not retried on every check
    assert watcher.current().version == 1
    assert watcher.failures == 1 and "v2" in watcher.last_error and "sha256" in watcher.last_error
    assert [(e.new_version, e.ok) for e in events] == [(2, False)]
    assert "refusing to load" in events[0].reason
    registry.rollback()  # back to v1, then a good v3
    watcher.check_now()
    assert watcher.current().version == 1


def test_an_incompatible_schema_is_refused(make_registry, bundle):
    registry = make_registry(versions=2)
    other = FeatureSchema(features=[FeatureSpec(name="something_else", kind="numeric")])
    watcher = ModelWatcher(registry, check_seconds=3600, compatible=lambda s: feature_mismatch(other, s.bundle.schema))
    with pytest.raises(ScoringError, match="cannot score this input"):
        watcher.start()  # a required model that cannot score the input fails at start


def test_the_background_thread_follows_within_its_check_interval(make_registry):
    registry = make_registry(versions=2)
    watcher = ModelWatcher(registry, check_seconds=0.05).start()
    try:
        registry.promote(2)
        wait_for(lambda: watcher.current().version == 2, timeout=30, what="the watcher to load v2", interval=0.02)
        assert watcher.version == 2
    finally:
        watcher.stop()


def test_a_pinned_version_never_follows(make_registry):
    registry = make_registry(versions=2)
    watcher = ModelWatcher(registry, "v1").start()
    registry.promote(2)
    assert not watcher.follows and watcher._thread is None
    assert watcher.current().version == 1
    follows = {ref: RegistryRef(registry, ref).follows for ref in ("challenger", "latest", "v3", 3)}
    assert follows == {"challenger": True, "latest": True, "v3": False, 3: False}


def test_an_optional_alias_serves_none_until_promoted(make_registry):
    registry = make_registry(versions=2)
    watcher = ModelWatcher(registry, "challenger", required=False, check_seconds=3600).start()
    assert watcher.current() is None
    registry.promote(2, "challenger")
    watcher.check_now()
    assert watcher.current().version == 2


def test_a_required_alias_with_a_tampered_version_fails_at_start(make_registry):
    registry = make_registry()
    tamper(registry, 1)
    with pytest.raises(IntegrityError):
        ModelWatcher(registry).start()


def test_a_swapped_scorer_scores_like_a_fresh_one(make_registry, incoming_rows):
    registry = make_registry(versions=2)
    watcher = ModelWatcher(registry, check_seconds=3600).start()
    registry.promote(2)
    watcher.check_now()
    rows = incoming_rows(200)
    swapped = watcher.current().score(rows)
    assert (swapped["model_version"] == 2).all()
    from scoring import Scorer

    fresh = Scorer.from_registry(registry, 2).score(rows)
    pd.testing.assert_series_equal(swapped["proba_1"], fresh["proba_1"])
