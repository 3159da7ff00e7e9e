"""Canary splits and plans without a broker: sticky keys, monotone weights, the plan in the registry."""

from __future__ import annotations

import numpy as np
import pytest

from scoring import RegistryError, ScoringError
from scoring.canary import BUCKETS, CanaryPlan, bucket_of, canary_mask
from scoring.canary_models import CanaryModels, verify_canary
from scoring.schema import FeatureSchema, FeatureSpec
from scoring.scorer import ScorerOptions

KEYS = [f"txn-7-c-{i:010d}".encode() for i in range(10_000)]


def test_ten_thousand_keys_at_weight_ten_send_ten_percent_to_the_canary():
    share = canary_mask(KEYS, 10).mean()
    assert abs(share - 0.10) <= 0.015, share
    assert canary_mask(KEYS, 0).sum() == 0 and canary_mask(KEYS, 100).all()


def test_a_key_always_meets_the_same_arm():
    first, again = canary_mask(KEYS, 25), canary_mask(list(reversed(KEYS)), 25)[::-1]
    assert (first == again).all()
    assert bucket_of("txn-1") == bucket_of(b"txn-1") and 0 <= bucket_of(b"x") < BUCKETS


def test_raising_the_weight_moves_keys_only_toward_the_canary():
    masks = [canary_mask(KEYS, w) for w in (5, 25, 50, 100)]
    for before, after in zip(masks, masks[1:], strict=False):
        assert not (before & ~after).any(), "a key left the canary when the weight rose"
        assert after.sum() > before.sum()


def test_a_plan_refuses_what_is_not_a_split():
    with pytest.raises(RegistryError, match="percentage"):
        CanaryPlan(canary=2, champion=1, weight=120)
    with pytest.raises(RegistryError, match="must rise"):
        CanaryPlan(canary=2, champion=1, weight=5, steps=(50, 25))
    with pytest.raises(RegistryError, match="champion already"):
        CanaryPlan(canary=1, champion=1, weight=5)
    plan = CanaryPlan(canary=2, champion=1, weight=5, steps=(5, 50))
    assert CanaryPlan.from_json(plan.to_json()) == plan


def test_the_plan_lives_in_the_registry_one_at_a_time(make_registry):
    registry = make_registry(2)
    assert registry.canary() is None
    plan = registry.start_canary("v2", weight=10)
    assert (plan.canary, plan.champion, plan.weight, plan.state) == (2, 1, 10, "running")
    assert registry.canary() == plan
    with pytest.raises(RegistryError, match="a canary of v2 is running"):
        registry.start_canary("v2", weight=20)
    raised = registry.update_canary(lambda p: p.with_changes(weight=50))
    assert registry.canary().weight == 50 == raised.weight
    ended = registry.promote_canary("all steps passed")
    assert ended.state == "promoted" and not ended.active and registry.resolve("champion") == 2
    assert registry.rollback() == 1  # the old champion stays one rollback away
    registry.start_canary("v2", weight=10)  # a new plan once the last one ended


def test_a_canary_is_verified_before_it_takes_any_key(make_registry, bundle):
    registry = make_registry(2)
    other = FeatureSchema(features=[FeatureSpec(name="not_a_feature", kind="numeric")])
    with pytest.raises(ScoringError, match="cannot score the champion's input"):
        verify_canary(registry, 2, other, min_roc_auc=None, options=ScorerOptions())
    with pytest.raises(ScoringError, match="quality gate"):
        verify_canary(registry, 2, bundle.schema, min_roc_auc=0.9999, options=ScorerOptions())
    assert verify_canary(registry, 2, bundle.schema, min_roc_auc=0.5, options=ScorerOptions()).version == 2


def test_scorers_follow_the_plan_and_a_refused_canary_takes_nothing(make_registry, bundle):
    registry = make_registry(3)
    follower = CanaryModels(registry, bundle.schema, min_roc_auc=0.5)
    follower.check_now()
    assert not follower.split().active
    registry.start_canary("v2", weight=10)
    follower.check_now()
    split = follower.split()
    assert split.active and split.canary is not None and split.canary.version == 2 and split.weight == 10
    registry.update_canary(lambda p: p.with_changes(weight=40))
    follower.check_now()
    assert follower.split().weight == 40 and follower.split().canary is split.canary  # not loaded again
    registry.update_canary(lambda p: p.with_changes(state="aborted", weight=0.0, reason="test"))
    follower.check_now()
    assert not follower.split().active

    strict = CanaryModels(registry, bundle.schema, min_roc_auc=0.9999)
    registry.start_canary("v3", weight=10)
    strict.check_now()
    assert not strict.split().active and "quality gate" in (strict.last_error or "")


def test_weights_split_a_frame_of_keys_independently_of_batch_boundaries():
    whole = canary_mask(KEYS, 30)
    parts = np.concatenate([canary_mask(KEYS[i : i + 700], 30) for i in range(0, len(KEYS), 700)])
    assert (whole == parts).all()


def test_each_plan_keeps_its_decisions_as_files_and_the_index_does_not_grow(make_registry):
    registry = make_registry(3)
    first = registry.start_canary("v2", weight=10, steps=(10, 50), interval_seconds=1)
    index_size = len((registry.root / "index.json").read_bytes())
    for i in range(30):
        registry.update_canary(lambda p: p.with_changes(failures=0), decision={"n": i, "checks": ["x" * 200]})
    registry.update_canary(lambda p: p.with_changes(state="aborted", weight=0.0), decision={"n": 30})
    assert abs(len((registry.root / "index.json").read_bytes()) - index_size) < 200  # a counter, not the log
    second = registry.start_canary("v3", weight=20)
    registry.promote_canary("by hand", decision={"n": "promoted"})
    assert [d["n"] for d in registry.canary_log(first)] == list(range(31))
    assert [d["n"] for d in registry.canary_log(second)] == ["promoted"]
    assert [d["n"] for d in registry.canary_log()] == [*range(31), "promoted"]  # every plan, in order
