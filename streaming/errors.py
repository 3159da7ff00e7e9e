"""Errors the stream raises, under the core's one ``ScoringError`` root."""

from __future__ import annotations

from scoring.errors import ScoringError


class KafkaAccessError(ScoringError):
    """Raised when Kafka refuses the connection (credentials, mechanism, certificate) or an operation (ACLs).

    The message names the user, the broker and the setting to change; it never holds a secret.
    """
