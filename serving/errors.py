"""Errors of the online API. The runtime raises scorepipe errors; only the app maps them to HTTP.

``RequestError`` and its kin say what is wrong with a request or a model in the terms of scoring;
``serving.app`` turns each into its status (``STATUS``) and ``{"error": ..., "problems": [...]}``.
``ApiError`` is the app's own, for what only HTTP knows (bodies, routes, keys).
"""

from __future__ import annotations

from scoring import ScoringError


class RequestError(ScoringError):
    """Raised by the runtime when a request cannot be scored; lists every problem at once."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        self.message = message
        self.problems = list(problems or [])
        super().__init__(message)

    def body(self) -> dict:
        body: dict = {"error": self.message}
        if self.problems:
            body["problems"] = self.problems
        return body


class TooLargeError(RequestError):
    """Raised by the runtime when a request holds more rows than ``serve_max_batch_records``."""


class UnknownModelError(RequestError):
    """Raised by the runtime for a model name or version this server does not have."""


class ModelUnavailableError(RequestError):
    """Raised by the runtime when no model is loaded, or a version exists but cannot be loaded."""


class ApiError(RequestError):
    """Raised by the app's handlers for HTTP-level problems, with the status to answer."""

    def __init__(self, status: int, message: str, problems: list[str] | None = None) -> None:
        self.status = status
        super().__init__(message, problems)


# The HTTP status of each error the runtime raises (the most specific class wins).
STATUS: dict[type[RequestError], int] = {
    TooLargeError: 413,
    UnknownModelError: 404,
    ModelUnavailableError: 503,
    RequestError: 400,
}


def status_of(exc: RequestError) -> int:
    """The HTTP status for ``exc``: its own for an ``ApiError``, else by its class."""
    if isinstance(exc, ApiError):
        return exc.status
    return next(status for kind, status in STATUS.items() if isinstance(exc, kind))
