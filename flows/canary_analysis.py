"""The ``canary-analysis`` Prefect flow: one judgement of a running rollout, for users who run Prefect.

Scheduled every minute or so, each run does what ``scorepipe canary watch`` does once: if the
plan's interval has passed, it takes the registry's lease, runs every check, steps, promotes or
rolls back, and appends the decision to the audit log. The decision is published as a markdown
artifact and its figures pushed to the Pushgateway; a roll-back ends the run Failed, so it is
never a silent success. Each run is a new process, so the traffic check needs Prometheus
(``SCOREPIPE_CANARY_PROMETHEUS_URL``): counters read from the scorers need a reading from the
interval's start, which only a long-running controller keeps.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.context import FlowRunContext
from prefect.states import Completed, Failed, State

from flows.settings import load_flow_settings
from gate.controller import CanaryController
from monitoring.push import push_run_figures
from scoring import Registry


@flow(name="canary-analysis", log_prints=True)
def canary_analysis() -> State:
    """Judge the running rollout if its interval has passed; Failed('Canary rolled back') when it is rolled back."""
    settings = load_flow_settings()
    registry = Registry(settings.registry_dir)
    plan = registry.canary()
    if plan is None or plan.state != "running" or not plan.rollout:
        return Completed(message="no running rollout to judge")
    if not plan.due():
        return Completed(message=f"canary v{plan.canary} at {plan.weight:g}%: the interval has not passed")
    run = FlowRunContext.get()
    run_id = run.flow_run.id if run is not None and run.flow_run is not None else "local"
    controller = CanaryController(settings, holder=f"prefect-{run_id}")
    if not registry.take_canary_lease(controller.holder, settings.canary_lease_seconds):
        return Completed(message="another controller holds the lease")
    try:
        after = controller.judge(plan)
    finally:
        registry.release_canary_lease(controller.holder)
    decision = registry.canary_log(plan)[-1]
    push_run_figures(
        settings.pushgateway_url,
        job="canary-analysis",
        figures={
            "scorepipe_canary_analysis_weight": (after.arm_weight(), "Percent of keys the canary takes after this run"),
            "scorepipe_canary_analysis_failures": (after.failures, "Failed judgements of the plan so far"),
            "scorepipe_canary_analysis_rolled_back": (
                float(decision["action"] == "rolled_back"),
                "1 if this run rolled the canary back",
            ),
            "scorepipe_canary_analysis_promoted": (
                float(decision["action"] == "promoted"),
                "1 if this run promoted it",
            ),
        },
    )
    if run is not None:
        get_run_logger().info("canary v%d: %s, %s", plan.canary, decision["verdict"], decision["action"])
        create_markdown_artifact(key="canary-analysis", markdown=markdown(decision), description=decision["reason"])
    message = f"canary v{after.canary}: {decision['action']} ({decision['reason']})"
    return (
        Failed(name="Canary rolled back", message=message)
        if decision["action"] == "rolled_back"
        else Completed(message=message)
    )


def markdown(decision: dict[str, Any]) -> str:
    rows = "\n".join(
        f"| {c['name']} | {c['verdict']} | {'-' if c['figure'] is None else format(c['figure'], '.4g')} | "
        f"{'-' if c['threshold'] is None else c['threshold']} | {c['detail']} |"
        for c in decision["checks"]
    )
    return (
        f"## Canary v{decision['canary']} at {decision['weight']:g}%: {decision['verdict']}, {decision['action']}\n\n"
        f"{decision['reason']}\n\n| check | verdict | figure | threshold | detail |\n|---|---|---|---|---|\n{rows}\n"
    )
