"""The shape of one JSON record (a stream event, an HTTP request's record) against a feature schema.

Only what JSON itself can get wrong is checked here: missing and unexpected fields and JSON types
(a bool is not a number, even though Python says so). Values are the core's business: ranges,
categories and nulls are judged by validation, exactly as for batch rows.
"""

from __future__ import annotations

import json
from typing import Any

from scoring.schema import FeatureSchema


class RecordShape:
    """Checks records for one schema; field names and kinds are looked up once, not per record.

    >>> from scoring.schema import FeatureSpec
    >>> shape = RecordShape(FeatureSchema(features=[FeatureSpec(name="x", kind="numeric")]))
    >>> shape.problems({"x": "1", "y": 2})
    ['unexpected fields: y', 'x: expected a number, got string "1"']
    """

    def __init__(self, schema: FeatureSchema) -> None:
        self.names = tuple(schema.names)
        self.known = frozenset(self.names)
        self._numeric = frozenset(f.name for f in schema.numeric)
        self._allowed = {
            f.name: frozenset({int, float, type(None)} if f.kind == "numeric" else {str, type(None)})
            for f in schema.features
        }

    def fits(self, payload: dict[str, Any]) -> bool:
        """The common case, checked with the least work: exactly the fields, of the right JSON types."""
        return payload.keys() == self.known and not self.type_problems(payload)

    def problems(self, payload: dict[str, Any]) -> list[str]:
        """Every problem of ``payload``'s shape, in a fixed order (fields first, then types)."""
        problems = []
        missing = [name for name in self.names if name not in payload]
        extra = sorted(name for name in payload if name not in self.known)
        if missing:
            problems.append(f"missing fields: {', '.join(missing)}")
        if extra:
            problems.append(f"unexpected fields: {', '.join(extra)}")
        return problems + self.type_problems(payload)

    def type_problems(self, payload: dict[str, Any]) -> list[str]:
        # null is left alone: absence is reported above, and a null value is the core's call.
        problems = []
        for name, value in payload.items():
            allowed = self._allowed.get(name)
            if allowed is None or type(value) in allowed:
                continue
            wanted = "a number" if name in self._numeric else "a string"
            problems.append(f"{name}: expected {wanted}, got {json_type(value)} {short(value)}")
        return problems


def json_type(value: Any) -> str:
    return {str: "string", bool: "boolean", list: "array", dict: "object"}.get(type(value), type(value).__name__)


def short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."
