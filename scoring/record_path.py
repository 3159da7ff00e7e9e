"""One clean record straight into the compiled trees: no frame, no input copy, tens of microseconds.

``Scorer.score_one`` on a lone record pays pandas' per-frame costs (a one-row frame, validation column
by column, the output frame): about 3.5 ms, where the trees take 20 us. ``RecordPath`` takes only the
common case: every feature present, numbers as ``int`` or ``float`` (finite, within the schema's
bounds), categories as ``str`` (known ones, where unknown ones are refused), missing values only where
allowed. Anything else goes to ``Scorer.score``, so every reject reason stays the frame path's own.

It fills one row of the compiled library's input (the same values ``CompiledTrees`` computes for a
frame) and calls the library's own ``predict`` for that row through ctypes, then the model's loss,
as scikit-learn does. It is trusted only after it reproduced ``predict_proba`` bit for bit on every
reference row, one record at a time; otherwise ``score_one`` keeps the frame path.

Written here because neither tl2cgen (whose per-call matrix copy costs more than the trees on one
row) nor scikit-learn scores a single record without building an array or a frame.
"""

from __future__ import annotations

import ctypes
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from scoring.schema import FeatureSchema

_MISSING = object()


@dataclass(frozen=True)
class _Input:
    """How one feature becomes one entry of the library's input row."""

    position: int
    name: str
    numeric: bool
    nullable: bool
    low: float  # numeric bounds (-inf/inf when none)
    high: float
    fill: float  # numeric: what a missing value becomes (NaN: left missing)
    codes: dict[str, float] | None  # categorical: the entry for each category
    unknown: float  # categorical: the entry for a category the encoders never saw
    missing: float  # categorical: the entry for a missing value
    known: frozenset[str] | None  # categorical: the only categories accepted (None: any)


class RecordPath:
    """Scores one clean record through a loaded compiled library; ``proba`` returns None to mean "use a frame"."""

    def __init__(self, library: ctypes.CDLL, inputs: list[_Input], n_features: int, per_row: int, loss: Any) -> None:
        self._predict = library.predict
        self._predict.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
        self._predict.restype = None
        self._inputs = inputs
        self._n = n_features
        self._per_row = per_row
        self._loss = loss

    @classmethod
    def build(cls, library: ctypes.CDLL, schema: FeatureSchema, prepared: Any, model: Any) -> RecordPath:
        """From the frame path's preparation (``compiled._Prepared``): the same value for every entry."""
        specs = {spec.name: spec for spec in schema.features}
        inputs = []
        for position, name in enumerate(prepared.features):
            spec = specs[name]
            index, table = prepared.categories[position], prepared.tables[position]
            numeric = index is None
            fill = prepared.fills[position]
            inputs.append(
                _Input(
                    position=position,
                    name=name,
                    numeric=numeric,
                    nullable=spec.nullable,
                    low=-math.inf if spec.min_value is None else float(spec.min_value),
                    high=math.inf if spec.max_value is None else float(spec.max_value),
                    fill=math.nan if fill is None else float(fill),
                    codes=None if numeric else {str(c): float(v) for c, v in zip(index, table[:-2], strict=True)},
                    unknown=math.nan if numeric else float(table[-2]),
                    missing=math.nan if numeric else float(table[-1]),
                    known=None if numeric or spec.allow_unknown else frozenset(spec.categories),
                )
            )
        if {i.name for i in inputs} != set(schema.names):
            raise ValueError("the compiled trees do not read every feature once")
        return cls(library, inputs, int(library.get_num_feature()), int(model.n_trees_per_iteration_), model._loss)

    def proba(self, record: dict[str, Any]) -> np.ndarray | None:
        """Class probabilities for ``record``, or None when it is not a clean record (score it as a frame)."""
        row = np.empty(self._n, dtype=np.float64)
        words = row.view(np.int32)  # each entry is a union: a double, or the int -1 (low word) for missing
        for entry in self._inputs:
            value = record.get(entry.name, _MISSING)
            kind = type(value)
            if entry.numeric:
                if kind is float or kind is int:
                    x = float(value)
                    if x != x:
                        if not entry.nullable:
                            return None
                        x = entry.fill
                    elif not entry.low <= x <= entry.high or x in (math.inf, -math.inf):
                        return None
                elif value is None and entry.nullable:
                    x = entry.fill
                else:
                    return None
            elif kind is str:
                if entry.known is not None and value not in entry.known:
                    return None
                assert entry.codes is not None
                x = entry.codes.get(value, entry.unknown)
            elif value is None and entry.nullable:
                x = entry.missing
            else:
                return None
            if x != x:
                words[2 * entry.position] = -1
            else:
                row[entry.position] = x
                if words[2 * entry.position] == -1:  # a present value the library would take for missing
                    return None
        margin = np.zeros(self._per_row, dtype=np.float64)
        self._predict(row.ctypes.data, 1, margin.ctypes.data)  # 1: the raw margin, before any link function
        proba = self._loss.predict_proba(margin.reshape(1, -1) if self._per_row > 1 else margin)
        return np.asarray(proba).reshape(-1)

    def verify(self, features: Any, expected: np.ndarray) -> str | None:
        """None if every row of ``features`` it takes scores exactly as ``expected``; else why not."""
        columns = {name: features[name].tolist() for name in features.columns}
        taken = 0
        for i in range(len(features)):
            got = self.proba({name: values[i] for name, values in columns.items()})
            if got is None:
                continue
            taken += 1
            if not np.array_equal(got, expected[i]):
                return f"one-record scores differ from predict_proba on reference row {i}"
        return None if taken else "no reference row was a clean record"
