"""How a report flow ends: the summary pushed and logged, a markdown artifact, and a state that says the verdict.

A verdict to act on (drift, degraded performance) is a Failed state with its own name, never a
silent success; the summary travels as the state's data either way.
"""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.context import FlowRunContext
from prefect.states import Completed, Failed, State

from flows.settings import FlowSettings
from monitoring.publish import publish_report


def report_state(settings: FlowSettings, job: str, summary: Any, markdown: str, *, failed_as: str | None) -> State:
    """Publish ``summary`` (Pushgateway, MLflow) and end the flow: Failed named ``failed_as``, else Completed."""
    publish_report(settings, job, summary)
    if FlowRunContext.get() is not None:
        get_run_logger().info("%s; report %s", summary.headline(), summary.html)
        create_markdown_artifact(key=job, markdown=markdown, description=summary.headline())
    if failed_as is not None:
        return Failed(name=failed_as, message=summary.headline(), data=summary.model_dump())
    return Completed(message=summary.headline(), data=summary.model_dump())
