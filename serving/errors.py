"""HTTP errors of the online API: a status, a message and, when there are several, every problem."""

from __future__ import annotations

from scoring import ScoringError


class ApiError(ScoringError):
    """Raised by the online API's handlers; rendered as ``{"error": ..., "problems": [...]}``."""

    def __init__(self, status: int, message: str, problems: list[str] | None = None) -> None:
        self.status = status
        self.message = message
        self.problems = list(problems or [])
        super().__init__(message)

    def body(self) -> dict:
        body: dict = {"error": self.message}
        if self.problems:
            body["problems"] = self.problems
        return body
