"""The canary-analysis flow under a real (test-harness) Prefect server: one judgement, its artifact, its state."""

from __future__ import annotations

import pytest

from scorepipe.settings import Settings
from tests.gate.test_controller import live_window
from tests.helpers import wait_for


@pytest.fixture
def rollout(prefect_server, make_registry, challenger_bundle, tmp_path, monkeypatch):
    registry = make_registry(1)
    registry.register(challenger_bundle, note="canary")
    registry.start_canary("v2", weight=10, steps=(10, 100), interval_seconds=1, failure_limit=1)
    env = {
        "SCOREPIPE_HOME": str(tmp_path / "home"),
        "SCOREPIPE_REGISTRY": str(registry.root),
        "SCOREPIPE_MIN_ROC_AUC": "0.5",
        "SCOREPIPE_CANARY_MIN_EVENTS": "100",
        "SCOREPIPE_CANARY_MIN_AGREEMENT": "0",
        "SCOREPIPE_CANARY_MAX_PROBABILITY_SHIFT": "1",
        "SCOREPIPE_CANARY_MAX_ESTIMATED_AUC_DROP": "1",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    live_window(Settings(), registry, registry.canary(), labels=False)
    wait_for(lambda: registry.canary().due(), timeout=30, what="the step's interval to pass")
    return registry


@pytest.mark.integration
def test_the_flow_judges_a_due_step_publishes_the_decision_and_moves_the_rollout(rollout):
    from prefect.artifacts import Artifact

    from flows.canary_analysis import canary_analysis

    state = canary_analysis(return_state=True)
    assert state.is_completed(), state.message
    plan = rollout.canary()
    assert (plan.state, plan.weight, plan.step) == ("running", 100, 1)
    decision = rollout.canary_log()[-1]
    assert decision["action"] == "next_step" and decision["controller"].startswith("prefect-")
    artifact = Artifact.get("canary-analysis")
    assert artifact is not None and "| agreement | pass |" in artifact.data and "next_step" in artifact.data
    rollout.update_canary(lambda p: p.with_changes(interval_seconds=3600))
    quiet = canary_analysis(return_state=True)  # the next interval has not passed yet: nothing is judged
    assert quiet.is_completed() and "has not passed" in quiet.message and len(rollout.canary_log()) == 1
