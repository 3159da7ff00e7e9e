"""Each check of the canary gate: evidence in, a verdict with its figure and threshold out. Pure: no I/O.

A verdict is ``pass``, ``fail``, or ``wait`` (too little evidence yet: the step holds, and the
decision says what is missing). A judgement fails if any check fails, waits if any waits, else
passes. Nothing passes silently: a check without its evidence waits, or says it was not configured.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from performance.arms import arm_auc_difference
from performance.estimate import estimated_metrics
from performance.labels import LABEL
from scoring.canary import CANARY, CHAMPION
from scoring.scorer import MODEL_VERSION, PREDICTION, PROBA_PREFIX, REJECT_REASON

Verdict = Literal["pass", "fail", "wait", "skip"]


@dataclass(frozen=True)
class Check:
    """One check's outcome: what was measured, against what, and what it means."""

    name: str
    verdict: Verdict
    figure: float | None
    threshold: float | None
    detail: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def overall(checks: list[Check]) -> Verdict:
    verdicts = {c.verdict for c in checks}
    return "fail" if "fail" in verdicts else "wait" if "wait" in verdicts else "pass"


def error_ratio(
    champion: tuple[float, float], canary: tuple[float, float], *, min_events: int, max_increase: float
) -> Check:
    """Events each arm's version refused or failed on, each given as (events, failed).

    A champion with no traffic this interval (the canary takes 100%) is compared as failing none.
    """
    (events_a, failed_a), (events_b, failed_b) = champion, canary
    if events_b < min_events:
        return Check(
            "error_ratio",
            "wait",
            None,
            max_increase,
            f"the canary scored {events_b:.0f} events this interval; {min_events} are needed",
        )
    ratio_b = failed_b / events_b
    ratio_a = failed_a / events_a if events_a else 0.0
    rise = ratio_b - ratio_a
    verdict: Verdict = "fail" if rise > max_increase else "pass"
    return Check(
        "error_ratio",
        verdict,
        rise,
        max_increase,
        f"failed: canary {ratio_b:.2%} of {events_b:.0f} events, champion {ratio_a:.2%} of {events_a:.0f}",
    )


def latency(
    champion: float | None,
    canary: float | None,
    canary_parts: float,
    *,
    min_parts: int,
    max_ratio: float,
    slack_seconds: float,
) -> Check:
    """The canary's p95 scoring time against the champion's, over the same interval.

    Fails only when the canary is both ``max_ratio`` times slower and slower by more than
    ``slack_seconds`` (so two sub-millisecond figures a bucket apart do not fail a good model). A
    champion that scored nothing this interval (the canary takes every key) is not compared, and said so.
    """
    if canary is None or canary_parts < min_parts:
        return Check(
            "latency_p95",
            "wait",
            None,
            max_ratio,
            f"the canary scored {canary_parts:.0f} parts this interval; {min_parts} are needed for a p95",
        )
    if champion is None:
        return Check(
            "latency_p95", "skip", None, max_ratio, f"canary p95 {canary * 1000:.1f} ms; no champion traffic to compare"
        )
    ratio = canary / champion if champion > 0 else float("inf")
    slower = canary > champion * max_ratio and canary - champion > slack_seconds
    return Check(
        "latency_p95",
        "fail" if slower else "pass",
        ratio,
        max_ratio,
        f"p95 scoring time: canary {canary * 1000:.1f} ms, champion {champion * 1000:.1f} ms "
        f"(fails above {max_ratio:g}x and {slack_seconds * 1000:g} ms slower)",
    )


def agreement(
    canary_rows: pd.DataFrame,
    champion_scores: pd.DataFrame | None,
    classes: list[Any],
    *,
    min_agreement: float,
    max_shift: float,
    min_rows: int,
) -> list[Check]:
    """The champion's scores for the canary's own rows, against the canary's: same label, probability shift."""
    if champion_scores is None or len(canary_rows) < min_rows:
        detail = f"{len(canary_rows)} canary rows in the live window; {min_rows} are needed"
        return [
            Check("agreement", "wait", None, min_agreement, detail),
            Check("probability_shift", "wait", None, max_shift, detail),
        ]
    positive = f"{PROBA_PREFIX}{classes[-1]}"
    answered = champion_scores[REJECT_REASON].isna().to_numpy()  # rows the champion would have refused: not compared
    canary_rows, champion_scores = canary_rows[answered], champion_scores[answered]
    rows = len(canary_rows)
    if rows < min_rows:
        detail = f"{rows} canary rows the champion would also score; {min_rows} are needed"
        return [
            Check("agreement", "wait", None, min_agreement, detail),
            Check("probability_shift", "wait", None, max_shift, detail),
        ]
    same = canary_rows[PREDICTION].astype(str).to_numpy() == champion_scores[PREDICTION].astype(str).to_numpy()
    share = float(same.mean())
    shift = float(np.abs(canary_rows[positive].to_numpy(float) - champion_scores[positive].to_numpy(float)).mean())
    return [
        Check(
            "agreement",
            "pass" if share >= min_agreement else "fail",
            share,
            min_agreement,
            f"the champion predicts {share:.2%} of the canary's {rows} rows alike",
        ),
        Check(
            "probability_shift",
            "pass" if shift <= max_shift else "fail",
            shift,
            max_shift,
            f"mean |canary - champion| P({classes[-1]}) on the same {rows} rows",
        ),
    ]


def estimated_performance(
    rows: pd.DataFrame, plan_versions: tuple[int, int], classes: list[Any], *, max_drop: float, min_rows: int
) -> Check:
    """CBPE: the ROC AUC each arm's own probabilities promise, canary against champion."""
    champion, canary = plan_versions
    positive = f"{PROBA_PREFIX}{classes[-1]}"
    by_arm = (
        {v: rows.loc[rows[MODEL_VERSION] == v, positive].to_numpy(float) for v in plan_versions} if len(rows) else {}
    )
    sizes = {v: len(by_arm.get(v, ())) for v in plan_versions}
    if min(sizes.values()) < min_rows:
        return Check(
            "estimated_roc_auc",
            "wait",
            None,
            max_drop,
            f"live-window rows: champion {sizes[champion]}, canary {sizes[canary]}; {min_rows} each needed",
        )
    auc_a = estimated_metrics(by_arm[champion])["roc_auc"]
    auc_b = estimated_metrics(by_arm[canary])["roc_auc"]
    drop = auc_a - auc_b
    return Check(
        "estimated_roc_auc",
        "fail" if drop > max_drop else "pass",
        drop,
        max_drop,
        f"estimated ROC AUC canary {auc_b:.4f}, champion {auc_a:.4f} (from their probabilities)",
    )


def labels(
    joined: pd.DataFrame | None,
    plan_versions: tuple[int, int],
    classes: list[Any],
    *,
    min_labels: int,
    waited_seconds: float,
    wait_limit: float,
    on_missing: str,
    seed: int = 0,
) -> Check:
    """ROC AUC by arm on late labels with a bootstrap interval: significantly worse fails; too few waits."""
    if joined is None:
        return Check("labels", "skip", None, None, "no label location configured (SCOREPIPE_CANARY_LABELS)")
    if len(classes) != 2:
        return Check("labels", "skip", None, None, "ROC AUC by arm is for binary models")
    champion, canary = plan_versions
    positive = f"{PROBA_PREFIX}{classes[-1]}"
    arms = {}
    for version in plan_versions:
        part = joined[joined[MODEL_VERSION] == version] if len(joined) else joined
        arms[version] = (
            ((part[LABEL].astype(str) == str(classes[-1])).to_numpy(), part[positive].to_numpy(float))
            if len(part)
            else (np.array([], bool), np.array([]))
        )
    counts = {v: len(arms[v][0]) for v in plan_versions}
    compared = (
        arm_auc_difference(arms[champion], arms[canary], seed=seed) if min(counts.values()) >= min_labels else None
    )
    if compared is None:
        missing = f"labelled rows: champion {counts[champion]}, canary {counts[canary]}; {min_labels} each needed"
        if waited_seconds < wait_limit:
            return Check("labels", "wait", None, None, f"{missing} (waited {waited_seconds:.0f} of {wait_limit:.0f} s)")
        verdict: Verdict = "pass" if on_missing == "pass" else "fail"
        return Check(
            "labels", verdict, None, None, f"{missing} after {wait_limit:.0f} s: the policy ({on_missing}) decides"
        )
    worse = compared["significantly_worse"]
    return Check(
        "labels",
        "fail" if worse else "pass",
        compared["difference"],
        0.0,
        f"ROC AUC canary {compared['canary_roc_auc']:.4f} ({compared['canary_rows']} labels), champion "
        f"{compared['champion_roc_auc']:.4f} ({compared['champion_rows']}); difference 95% interval "
        f"[{compared['ci95_low']:+.4f}, {compared['ci95_high']:+.4f}]" + (": significantly worse" if worse else ""),
    )


ARMS = (CHAMPION, CANARY)
