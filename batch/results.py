"""Typed results of a batch run: what happened to each file, and to the run as a whole.

The CLI, the flow's artifacts and the Pushgateway figures are all rendered from these objects.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

from batch.errors import BatchRunFailed
from scoring.agreement import Agreement

Status = Literal["scored", "skipped", "quarantined", "failed"]


@dataclass
class FileResult:
    """What happened to one input file."""

    source: str
    status: Status
    rows: int = 0
    scored: int = 0
    rejected: int = 0
    output: str | None = None
    rejects: str | None = None
    error: str | None = None
    seconds: float = 0.0
    shadow_output: str | None = None
    shadow_error: str | None = None
    agreement: dict | None = None  # Agreement.to_dict() of champion vs challenger on this file


@dataclass
class BatchSummary:
    """What one batch run did, file by file, with totals; returned by the flow and the CLI."""

    run_id: str
    model_version: int
    input: str
    output: str
    files: list[FileResult] = field(default_factory=list)
    shadow_version: int | None = None
    mlflow: dict | None = None  # the MLflow model name, version and run the champion came from

    def count(self, status: Status) -> int:
        return sum(1 for f in self.files if f.status == status)

    @property
    def rows_scored(self) -> int:
        return sum(f.scored for f in self.files)

    @property
    def rows_rejected(self) -> int:
        return sum(f.rejected for f in self.files)

    def agreement(self) -> Agreement | None:
        """Champion/challenger agreement over every file scored with a shadow in this run."""
        parts = [Agreement.from_dict(f.agreement) for f in self.files if f.agreement]
        if not parts:
            return None
        total = parts[0]
        for part in parts[1:]:
            total.merge(part)
        return total

    def to_dict(self) -> dict:
        agreement = self.agreement()
        return {
            "run_id": self.run_id,
            "model_version": self.model_version,
            "shadow_version": self.shadow_version,
            "mlflow": self.mlflow,
            "shadow_agreement": agreement.summary() if agreement else None,
            "input": self.input,
            "output": self.output,
            "files_scored": self.count("scored"),
            "files_skipped": self.count("skipped"),
            "files_quarantined": self.count("quarantined"),
            "files_failed": self.count("failed"),
            "rows_scored": self.rows_scored,
            "rows_rejected": self.rows_rejected,
            "files": [asdict(f) for f in self.files],
        }

    def figures(self, seconds: float) -> dict[str, tuple[float, str]]:
        """The run's figures as Pushgateway gauges: name -> (value, help)."""
        figures: dict[str, tuple[float, str]] = {
            "scorepipe_batch_rows_scored": (self.rows_scored, "Rows scored by the last score-batch run"),
            "scorepipe_batch_rows_rejected": (self.rows_rejected, "Rows rejected by validation in the last run"),
            "scorepipe_batch_files_scored": (self.count("scored"), "Files scored in the last run"),
            "scorepipe_batch_files_skipped": (self.count("skipped"), "Files already current in the last run"),
            "scorepipe_batch_files_quarantined": (self.count("quarantined"), "Files quarantined in the last run"),
            "scorepipe_batch_files_failed": (self.count("failed"), "Files failed after retries in the last run"),
            "scorepipe_batch_duration_seconds": (seconds, "Wall time of the last score-batch run"),
            "scorepipe_batch_model_version": (self.model_version, "Model version of the last run"),
        }
        agreement = self.agreement()
        if agreement is not None and agreement.rows:
            figures["scorepipe_batch_shadow_label_agreement_ratio"] = (
                agreement.label_agreement or 0.0,
                "Champion/challenger label agreement in the last run",
            )
            figures["scorepipe_batch_shadow_p95_abs_proba_diff"] = (
                agreement.quantile(0.95) or 0.0,
                "p95 absolute difference in the positive-class probability in the last run",
            )
        return figures

    def raise_for_failures(self) -> None:
        """Raise ``BatchRunFailed`` naming every file that failed even after its retries (others were scored)."""
        failed = [f for f in self.files if f.status == "failed"]
        if failed:
            details = "; ".join(f"{f.source}: {f.error}" for f in failed)
            raise BatchRunFailed(f"{len(failed)} of {len(self.files)} input files failed: {details}")
