"""Errors the batch engine raises, under the core's one ``ScoringError`` root."""

from __future__ import annotations

from scoring.errors import ScoringError


class BatchRunFailed(ScoringError):
    """Raised by a batch run when some input files failed even after retries (the others were scored)."""
