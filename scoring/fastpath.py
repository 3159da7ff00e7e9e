"""A shortcut through sklearn's per-call overhead for small frames, used only where it is bit-identical.

A lone record through ``Pipeline.predict_proba`` costs about 6 ms, and almost none of it is arithmetic:
two ``ColumnTransformer`` passes (ours, and the one ``HistGradientBoostingClassifier`` builds for its
categorical features), input checks per step and a Python call per tree. That overhead is what an
online API pays per request and a quiet stream pays per event.

``SmallFramePredictor`` reads the fitted pipeline once and replays it on plain arrays: imputation
fills, category codes looked up in tables built from the fitted encoders, then the fitted trees.
For the fewest rows (a lone request, a quiet stream's micro-batch) even one Python call per tree is
most of the cost, so ``_Forest`` joins every tree into one node array behind a routing tree on a
tree-number column: sklearn's own compiled traversal then visits all trees of all rows in one call,
and the per-tree values are summed in sklearn's order.
It supports one shape of pipeline (``ColumnTransformer`` of ``SimpleImputer`` / ``OrdinalEncoder`` /
passthrough, then ``HistGradientBoostingClassifier``), which is what ``scorepipe train`` fits; any
other model goes through sklearn. It is trusted only after it reproduced ``predict_proba`` exactly
(``np.array_equal``, not a tolerance) on the bundle's reference sample and on probe rows with missing
values and unknown categories; otherwise it is not used, and the reason is logged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OrdinalEncoder

from scoring.schema import FeatureSchema
from scoring.validation import validate

log = logging.getLogger("scorepipe.models")

MAX_ROWS = 512  # measured: 5x faster at 1 row, 2x at 256, even near 1,500, where sklearn's threads win
ONE_CALL_ROWS = 64  # up to here, all trees in one call (10x at 1 row, 3x at 20); even near 100 rows
_CHECK_ROWS = 512  # reference rows replayed at load; the shortcut must match every one exactly
_CHECK_CHUNK = 50  # replayed in small frames too, as the shortcut is used


class NotSupported(Exception):
    """The pipeline is not of the one shape the shortcut replays (internal: the caller falls back)."""


@dataclass(frozen=True)
class _Column:
    """How one input feature becomes one column of the trees' input."""

    feature: str
    fill: float | None = None  # numeric: the imputation value for NaN (None: left as NaN)
    codes: dict[Any, float] | None = None  # categorical: final code per category
    unknown: float = np.nan  # categorical: code of a category the encoders never saw
    missing: float = np.nan  # categorical: code of a missing value


class SmallFramePredictor:
    """``predict_proba`` of one fitted pipeline on small validated frames, without sklearn's per-call checks."""

    def __init__(self, pipeline: Any, schema: FeatureSchema) -> None:
        self._model, self._columns = _read_pipeline(pipeline, schema)
        self._bitsets, self._feature_map = self._model._bin_mapper.make_known_categories_bitsets()
        self._baseline = self._model._baseline_prediction
        try:
            self._forest = _Forest(self._model, self._feature_map, len(self._columns))
        except Exception as exc:  # noqa: BLE001 - sklearn internals that moved: fall back to sklearn
            raise NotSupported(f"the trees cannot be joined: {type(exc).__name__}: {exc}") from exc

    @classmethod
    def verified(cls, pipeline: Any, schema: FeatureSchema, reference: pd.DataFrame) -> SmallFramePredictor | None:
        """The shortcut for ``pipeline`` if it reproduces ``predict_proba`` exactly, else None."""
        try:
            predictor = cls(pipeline, schema)
        except NotSupported as exc:
            log.debug("small-frame shortcut not used: %s", exc)
            return None
        features = check_rows(reference, schema)
        if len(features) == 0:
            log.info("small-frame shortcut not used: no reference rows to verify it on")
            return None
        expected = pipeline.predict_proba(features)
        chunks = [features.iloc[i : i + _CHECK_CHUNK] for i in range(0, len(features), _CHECK_CHUNK)]
        try:
            in_one_call = np.vstack([predictor.predict_proba(chunk) for chunk in chunks])
            tree_by_tree = predictor.predict_proba(features)  # more than ONE_CALL_ROWS: the other way
        except Exception as exc:  # noqa: BLE001 - a sklearn whose internals moved: fall back, say why
            log.warning("small-frame shortcut not used: %s: %s", type(exc).__name__, exc)
            return None
        for got in (in_one_call, tree_by_tree):
            if got.shape != expected.shape or not np.array_equal(got, expected):
                log.warning("small-frame shortcut not used: it differs from predict_proba on the reference sample")
                return None
        return predictor

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        """Probabilities for validated ``features`` (the schema's columns, cast by ``validate``)."""
        n = len(features)
        matrix = np.empty((n, len(self._columns)), dtype=np.float64)
        for j, column in enumerate(self._columns):
            if column.codes is None:
                values = features[column.feature].to_numpy(dtype=np.float64)
                if column.fill is not None:
                    values = np.where(np.isnan(values), column.fill, values)
                matrix[:, j] = values
            else:
                codes, unknown, missing = column.codes, column.unknown, column.missing
                matrix[:, j] = [
                    missing if v is None or v != v else codes.get(v, unknown)
                    for v in features[column.feature].to_numpy(dtype=object)
                ]
        if n <= ONE_CALL_ROWS:
            return self._model._loss.predict_proba(self._forest.raw_predict(matrix, self._baseline, self._bitsets))
        raw = np.zeros((n, self._model.n_trees_per_iteration_), dtype=self._baseline.dtype, order="F")
        raw += self._baseline
        for predictors in self._model._predictors:
            for k, predictor in enumerate(predictors):
                # One OpenMP thread: the rows are few, and each row's sum over trees is the same either way.
                raw[:, k] += predictor.predict(matrix, self._bitsets, self._feature_map, 1)
        return self._model._loss.predict_proba(raw)


class _Forest:
    """Every tree of the model in one node array, behind a routing tree on an extra tree-number column.

    Row ``r`` is repeated once per tree with its tree's number appended; the routing tree (numeric
    splits on that column) sends each copy to the root of its tree, whose nodes keep their splits,
    thresholds, missing-value directions and categorical bitsets (indices shifted into the joint
    arrays). So one call of sklearn's compiled ``_predict_from_raw_data`` returns every tree's leaf
    value for every row, and the values are added per row in the order sklearn adds them.
    """

    def __init__(self, model: Any, feature_map: np.ndarray, n_features: int) -> None:
        from sklearn.ensemble._hist_gradient_boosting._predictor import _predict_from_raw_data

        self._traverse = _predict_from_raw_data  # imported once here, not on every call
        trees = [tree for iteration in model._predictors for tree in iteration]
        self.n_trees, self.per_iteration, self.tree_column = len(trees), model.n_trees_per_iteration_, n_features
        routing: list[tuple[float, int, int]] = []
        first = [0] * len(trees)

        def route(low: int, high: int) -> int:  # a node index, or -(tree + 1) for a tree's root
            if high - low == 1:
                return -(low + 1)
            middle = (low + high) // 2
            routing.append((0.0, 0, 0))
            at = len(routing) - 1
            routing[at] = (middle - 0.5, route(low, middle), route(middle, high))
            return at

        route(0, len(trees))
        start, bitsets = len(routing), []
        for i, tree in enumerate(trees):
            first[i], start = start, start + len(tree.nodes)
        nodes = np.zeros(start, dtype=trees[0].nodes.dtype)
        for at, (threshold, left, right) in enumerate(routing):
            nodes[at]["feature_idx"], nodes[at]["num_threshold"] = n_features, threshold
            nodes[at]["left"] = left if left >= 0 else first[-left - 1]
            nodes[at]["right"] = right if right >= 0 else first[-right - 1]
        shift = 0
        for begin, tree in zip(first, trees, strict=True):
            own = tree.nodes.copy()
            split = own["is_leaf"] == 0
            own["left"][split] += begin
            own["right"][split] += begin
            own["bitset_idx"][own["is_categorical"] == 1] += shift
            nodes[begin : begin + len(own)] = own
            bitsets.append(tree.raw_left_cat_bitsets)
            shift += len(tree.raw_left_cat_bitsets)
        self.nodes = nodes
        self.left_bitsets = np.ascontiguousarray(np.concatenate(bitsets), dtype=np.uint32)
        self.feature_map = np.ascontiguousarray(np.append(feature_map, 0), dtype=np.uint32)

    def raw_predict(self, matrix: np.ndarray, baseline: np.ndarray, known_bitsets: np.ndarray) -> np.ndarray:
        """Raw scores (n, trees per iteration): baseline plus every tree's value, added tree by tree."""
        n, trees = len(matrix), self.n_trees
        copies = np.empty((n * trees, self.tree_column + 1), dtype=np.float64)
        copies[:, : self.tree_column] = np.tile(matrix, (trees, 1))  # tree-major: each tree's rows together
        copies[:, self.tree_column] = np.repeat(np.arange(trees, dtype=np.float64), n)
        values = np.empty(n * trees, dtype=np.float64)
        self._traverse(self.nodes, copies, self.left_bitsets, known_bitsets, self.feature_map, 1, values)
        per_tree = values.reshape(trees // self.per_iteration, self.per_iteration, n).transpose(2, 0, 1)
        start = np.broadcast_to(baseline.reshape(1, 1, -1), (n, 1, self.per_iteration))
        # add.accumulate is a sequential left fold: ((baseline + t0) + t1) + ..., as sklearn's += loop
        return np.add.accumulate(np.concatenate([start, per_tree], axis=1), axis=1)[:, -1, :]


def _read_pipeline(pipeline: Any, schema: FeatureSchema) -> tuple[Any, list[_Column]]:
    """The trees and, per column of their input, how to compute it from one validated feature."""
    model, outer = read_outer(pipeline, schema)
    return model, _through_model(model, outer)


def read_outer(pipeline: Any, schema: FeatureSchema) -> tuple[Any, list[_Column]]:
    """The trees and, per column of the pipeline's ``ColumnTransformer`` output, how to compute it.

    These are the columns ``HistGradientBoostingClassifier`` is given, before its own encoder.
    """
    if not isinstance(pipeline, Pipeline) or len(pipeline.steps) != 2:
        raise NotSupported(f"{type(pipeline).__name__} is not a two-step Pipeline")
    pre, model = pipeline.steps[0][1], pipeline.steps[1][1]
    if not isinstance(pre, ColumnTransformer) or type(model) is not HistGradientBoostingClassifier:
        raise NotSupported("not ColumnTransformer then HistGradientBoostingClassifier")
    if getattr(pre, "sparse_output_", False) or getattr(pre, "_sklearn_output_config", {}).get("transform") not in (
        None,
        "default",
    ):
        raise NotSupported("the ColumnTransformer does not output a dense array")
    outer = [column for name, step, names in pre.transformers_ for column in _outer_columns(name, step, names)]
    if {c.feature for c in outer} - set(schema.names):
        raise NotSupported("the ColumnTransformer reads columns outside the schema")
    if getattr(model, "n_features_in_", len(outer)) != len(outer):
        raise NotSupported("the trees expect a different number of columns")
    return model, outer


def _outer_columns(name: str, transformer: Any, names: Any) -> list[_Column]:
    if isinstance(transformer, str):
        if transformer == "drop":
            return []
        if transformer == "passthrough" and all(isinstance(n, str) for n in names):
            return [_Column(n) for n in names]
        raise NotSupported(f"transformer {name!r} is {transformer!r} on {names!r}")
    if not all(isinstance(n, str) for n in names):
        raise NotSupported(f"transformer {name!r} selects columns by position")
    if type(transformer) is SimpleImputer:
        statistics = np.asarray(transformer.statistics_, dtype=np.float64)
        missing = transformer.missing_values
        if transformer.add_indicator or not (isinstance(missing, float) and np.isnan(missing)):
            raise NotSupported(f"imputer {name!r} adds indicators or imputes a value other than NaN")
        if len(statistics) != len(names) or np.isnan(statistics).any():
            raise NotSupported(f"imputer {name!r} drops an all-missing column")
        return [_Column(n, fill=float(s)) for n, s in zip(names, statistics, strict=True)]
    if type(transformer) is OrdinalEncoder:
        if transformer.handle_unknown != "use_encoded_value" or getattr(transformer, "_infrequent_enabled", False):
            raise NotSupported(f"encoder {name!r} raises on unknown categories or groups infrequent ones")
        if np.dtype(transformer.dtype) != np.float64:
            raise NotSupported(f"encoder {name!r} outputs {transformer.dtype}")
        columns = []
        for n, categories in zip(names, transformer.categories_, strict=True):
            if any(c is None or c != c for c in categories):
                raise NotSupported(f"encoder {name!r} learned a missing value as a category of {n!r}")
            codes = {c: float(i) for i, c in enumerate(categories.tolist())}
            columns.append(
                _Column(
                    n,
                    codes=codes,
                    unknown=float(transformer.unknown_value),
                    missing=float(transformer.encoded_missing_value),
                )
            )
        return columns
    raise NotSupported(f"transformer {name!r} is a {type(transformer).__name__}")


def _through_model(model: Any, outer: list[_Column]) -> list[_Column]:
    """Apply the trees' own categorical re-encoding: their input order and codes."""
    if getattr(model, "n_features_in_", len(outer)) != len(outer):
        raise NotSupported("the trees expect a different number of columns")
    inner = model._preprocessor
    if inner is None:
        if any(c.codes is not None for c in outer) and model.is_categorical_ is not None:
            raise NotSupported("categorical trees without their own encoder")
        return outer
    final: list[_Column] = []
    for name, transformer, mask in inner.transformers_:
        positions = np.flatnonzero(np.asarray(mask)) if np.asarray(mask).dtype == bool else np.asarray(mask, dtype=int)
        if isinstance(transformer, str):
            if transformer == "drop" and len(positions) == 0:
                continue
            raise NotSupported(f"the trees' own {name!r} step is {transformer!r}")
        if type(transformer) is FunctionTransformer:
            final += [outer[p] for p in positions]
        elif type(transformer) is OrdinalEncoder:
            for p, categories in zip(positions, transformer.categories_, strict=True):
                final.append(_reencode(outer[p], categories, transformer))
        else:
            raise NotSupported(f"the trees' own {name!r} step is a {type(transformer).__name__}")
    return final


def _reencode(column: _Column, categories: np.ndarray, encoder: Any) -> _Column:
    """Compose our encoder's codes with the trees' encoder (float code -> category index)."""
    if column.codes is None or np.isnan(categories).any():
        raise NotSupported(f"the trees re-encode {column.feature!r} in a way the shortcut does not replay")
    index = {float(c): float(i) for i, c in enumerate(categories.tolist())}

    def second(code: float) -> float:
        if code != code:
            return float(encoder.encoded_missing_value)
        return index.get(code, float(encoder.unknown_value))

    return _Column(
        column.feature,
        codes={category: second(code) for category, code in column.codes.items()},
        unknown=second(column.unknown),
        missing=second(column.missing),
    )


def check_rows(reference: pd.DataFrame, schema: FeatureSchema) -> pd.DataFrame:
    """Reference rows to verify on, plus probes: every value missing, and unknown categories."""
    missing = [n for n in schema.names if n not in reference.columns]
    if missing:
        return pd.DataFrame()
    sample = reference[schema.names].head(_CHECK_ROWS).reset_index(drop=True)
    probes = sample.head(2).copy()
    if len(probes):
        for spec in schema.features:
            probes.loc[0, spec.name] = None if spec.kind == "categorical" else np.nan
            if spec.kind == "categorical":
                probes.loc[1, spec.name] = "\x00not-a-category"
    checked = validate(pd.concat([sample, probes], ignore_index=True), schema)
    # Probe rows may be rejected by the schema; the model must still give the same answer on them.
    return checked.features
