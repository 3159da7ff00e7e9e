"""``scorepipe canary``: split live traffic with a new version (an A/B split or a stepped rollout), see it, end it."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from scorepipe.render import console

if TYPE_CHECKING:
    from scorepipe.settings import Settings


def cmd_canary_start(args: argparse.Namespace, settings: Settings) -> int:
    from scoring import Registry
    from scoring.canary_models import verify_canary

    registry = Registry(settings.registry_dir)
    version = registry.resolve(args.version)
    champion = registry.load("champion")  # hash-checked: the features the canary must take
    steps = tuple(float(s) for s in args.steps.split(",")) if args.steps else ()
    weight = steps[0] if steps else args.weight
    # Loaded and verified like any version before it takes a single event; refused here, with why.
    verify_canary(
        registry,
        version,
        champion.bundle.schema,
        min_roc_auc=settings.min_roc_auc,
        options=settings.scorer_options,
    )
    plan = registry.start_canary(
        version,
        weight=weight,
        steps=steps,
        interval_seconds=args.interval,
        failure_limit=args.failure_limit,
        reason="started" + (f" (rollout {', '.join(f'{s:g}%' for s in steps)})" if steps else " (A/B split)"),
    )
    console.print(
        f"canary v{plan.canary} takes {plan.weight:g}% of keys against champion v{plan.champion}"
        + (f"; steps {', '.join(f'{s:g}%' for s in steps)} every {args.interval:g} s" if steps else "")
    )
    return 0


def cmd_canary_status(args: argparse.Namespace, settings: Settings) -> int:
    from scorepipe.render import print_canary, print_canary_decisions
    from scoring import Registry

    registry = Registry(settings.registry_dir)
    plan = registry.canary()
    if plan is None:
        console.print("no canary plan: start one with `scorepipe canary start VERSION --weight 10`")
        return 0
    print_canary(plan)
    decisions = registry.canary_log(plan)
    if decisions:
        print_canary_decisions(decisions[-args.last :])
    return 0


def cmd_canary_promote(args: argparse.Namespace, settings: Settings) -> int:
    from scoring import Registry

    plan = Registry(settings.registry_dir).promote_canary(reason=args.reason or "promoted by hand")
    console.print(f"champion is now v{plan.canary} (was v{plan.champion}; `scorepipe models rollback` undoes it)")
    return 0


def cmd_canary_abort(args: argparse.Namespace, settings: Settings) -> int:
    from scoring import Registry

    reason = args.reason or "aborted by hand"
    plan = Registry(settings.registry_dir).update_canary(
        lambda plan: plan.with_changes(state="aborted", weight=0.0, reason=reason) if plan.state == "running" else plan
    )
    console.print(f"canary v{plan.canary}: {plan.state} ({plan.reason}); every key goes to champion v{plan.champion}")
    return 0


def cmd_canary_watch(args: argparse.Namespace, settings: Settings) -> int:
    from gate.controller import CanaryController
    from monitoring.health import Health, OpsServer
    from monitoring.metrics import GateMetrics

    metrics = GateMetrics()
    controller = CanaryController(settings, holder=args.name, metrics=metrics, stopping=args.stopping)
    server = None
    port = args.metrics_port if args.metrics_port is not None else settings.metrics_port
    if port is not None:
        server = OpsServer(metrics.registry, Health(), port=port, host=args.metrics_host).start()
        console.print(f"metrics on {server.url}")
    console.print(f"controller {controller.holder} judging the canary plan in {settings.registry_dir}")
    try:
        plan = controller.run(exit_when_ended=not args.keep_watching)
    finally:
        if server is not None:
            server.stop()
    if plan is None:
        console.print("no canary plan")
        return 0
    console.print(f"canary v{plan.canary}: {plan.state} ({plan.reason})", soft_wrap=True)
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    canary = commands.add_parser(
        "canary", help="split live traffic with a new version: an A/B split or a stepped rollout"
    ).add_subparsers(title="canary commands")
    start = canary.add_parser("start", help="send a share of keys to VERSION (verified first), against the champion")
    start.add_argument("version", help="the canary: a version (v3) or alias")
    start.add_argument("--weight", type=float, default=10.0, help="percent of keys it takes (a fixed A/B split)")
    start.add_argument("--steps", help="a rollout's weights, e.g. 5,25,50,100 (the first is taken at once)")
    start.add_argument("--interval", type=float, default=600.0, help="seconds between a rollout's judgements")
    start.add_argument("--failure-limit", type=int, default=2, help="failed judgements before it is rolled back")
    start.set_defaults(handler=cmd_canary_start)
    status = canary.add_parser("status", help="the plan: versions, weight, step, state and why")
    status.add_argument("--last", type=int, default=10, help="the decisions shown, newest last")
    status.set_defaults(handler=cmd_canary_status)
    promote = canary.add_parser("promote", help="make the running canary champion now (and end the plan)")
    promote.add_argument("--reason", help="kept with the plan")
    promote.set_defaults(handler=cmd_canary_promote)
    abort = canary.add_parser("abort", help="end the plan: weight 0, the champion untouched")
    abort.add_argument("--reason", help="kept with the plan")
    abort.set_defaults(handler=cmd_canary_abort)
    watch = canary.add_parser("watch", help="the gate: judge each interval of a rollout; step, promote or roll back")
    watch.add_argument("--name", help="this controller's id in the lease and the audit log (default: random)")
    watch.add_argument("--keep-watching", action="store_true", help="wait for the next plan instead of exiting")
    watch.add_argument("--metrics-port", type=int, help="serve its /metrics on 127.0.0.1:PORT (0: any free port)")
    watch.add_argument("--metrics-host", default="127.0.0.1", help="interface for --metrics-port")
    watch.set_defaults(handler=cmd_canary_watch, stoppable=True)
