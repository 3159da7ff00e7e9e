"""Compiled trees: the model's gradient-boosted trees as generated C, bit-identical to scikit-learn.

``HistGradientBoostingClassifier.predict_proba`` is most of a batch's time. Treelite reads the fitted
trees (splits, float64 thresholds, missing-value directions, categorical bitsets) and tl2cgen turns
them into C, compiled with the machine's C compiler into a shared library stored in the bundle
(``trees.so``, with its sha256 in the manifest like every other artifact). Measured on the default
pipeline, one thread: 2-3x scikit-learn's own tree traversal, and no per-call input checks.

Exactness is built, then proven. scikit-learn adds the trees in order *starting from the baseline*;
Treelite adds its base score last, which differs in the last bit. So the baseline becomes a first
one-leaf tree and the base score is zero; the raw margin then goes through the model's own loss
(``_loss.predict_proba``), as scikit-learn does. Inputs are scikit-learn's float64 values (the
compiled code compares in float64; ``quantize`` maps inputs to threshold ranks, which preserves
every comparison). A category the trees' own encoder never saw becomes NaN, which is what that
encoder does. At load, ``CompiledTrees.verified`` compares ``predict_proba`` with ``np.array_equal``
on the reference sample and on probe rows (all missing, unknown categories), whole and in small
frames, with the thread count it will run with; on any difference, scikit-learn scores and the
reason is kept for ``/model_info`` and the metrics.

Written here rather than taken whole from a library: Treelite and tl2cgen do the conversion and
the code generation; what they do not do is the pipeline around the trees (imputer and encoder
tables), the baseline's order of addition, and the check that makes the result trustworthy.
"""

from __future__ import annotations

import ctypes
import dataclasses
import hashlib
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scoring.bundle import ModelBundle
from scoring.fastpath import NotSupported, check_rows, read_outer

log = logging.getLogger("scorepipe.models")

ROUTE = "tl2cgen"
INFO_KEY = "compiled_trees"  # in the bundle's info: what was built, or why nothing was
_PARAMS = {"quantize": 1}
_CHECK_CHUNK = 7  # rows are also replayed in small frames, as a stream's polls are
_CHECK_SMALL = 40  # that many reference rows (and the probes) in small frames: a reload stays cheap


@dataclass(frozen=True)
class TreeCompiler:
    """Builds a bundle's compiled trees at registration; ``cache`` keeps libraries by content, across registrations."""

    toolchain: str = "gcc"
    cache: Path | None = None
    jobs: int = 2  # translation units compiled in parallel

    def attach(self, bundle: ModelBundle) -> ModelBundle:
        """``bundle`` with its compiled trees, or with the reason there are none in its info; never raises."""
        if bundle.compiled_trees is not None:
            return bundle
        started = time.perf_counter()
        try:
            library = self._build(bundle)
        except NotSupported as exc:
            return bundle.with_info(**{INFO_KEY: {"route": None, "reason": str(exc)}})
        except Exception as exc:  # noqa: BLE001 - a compiler or library failure: register without, and say why
            log.warning("compiled trees not built: %s: %s", type(exc).__name__, exc)
            reason = f"build failed: {type(exc).__name__}: {exc}"
            return bundle.with_info(**{INFO_KEY: {"route": None, "reason": reason}})
        built = {"route": ROUTE, "seconds": round(time.perf_counter() - started, 2), **_versions()}
        return dataclasses.replace(bundle, compiled_trees=library).with_info(**{INFO_KEY: built})

    def _build(self, bundle: ModelBundle) -> bytes:
        model, _ = read_outer(bundle.pipeline, bundle.schema)  # NotSupported: a pipeline of another shape
        if shutil.which(self.toolchain) is None:
            raise NotSupported(f"no C compiler ({self.toolchain}) on PATH: scikit-learn scores this version")
        try:
            import tl2cgen
            import treelite
        except ImportError as exc:
            raise NotSupported(f"treelite/tl2cgen are not installed ({exc.name})") from exc
        _quiet(tl2cgen)
        joint = _treelite_model(model, treelite)
        build = (_versions(), _PARAMS, self.toolchain, _compiler_version(self.toolchain))
        key = hashlib.sha256(joint.serialize_bytes() + repr(build).encode()).hexdigest()
        cached = self.cache / f"{key}.so" if self.cache is not None else None
        if cached is not None and cached.is_file() and _trusted(cached):
            return cached.read_bytes()
        with tempfile.TemporaryDirectory(prefix="scorepipe-trees-") as work:
            target = Path(work) / "trees.so"
            params = {**_PARAMS, "parallel_comp": max(1, self.jobs)}
            tl2cgen.export_lib(joint, toolchain=self.toolchain, libpath=str(target), params=params, nthread=self.jobs)
            library = target.read_bytes()
        if cached is not None and self.cache is not None:
            self.cache.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not _trusted(self.cache):
                return library  # a cache others can write to is neither read nor written
            partial = cached.with_suffix(f".{os.getpid()}.tmp")
            partial.write_bytes(library)
            partial.replace(cached)  # atomic: a concurrent build of the same trees writes the same bytes
        return library


def _treelite_model(model: Any, treelite: Any) -> Any:
    """The trees as a Treelite model whose first trees hold the baseline (so it is added first, as sklearn does)."""
    import treelite.model_builder as builder
    import treelite.sklearn

    try:
        imported = treelite.sklearn.import_model(model)
    except Exception as exc:  # noqa: BLE001 - Treelite refuses shapes it cannot convert: fall back
        raise NotSupported(f"Treelite cannot read the trees: {type(exc).__name__}: {exc}") from exc
    import json

    header = json.loads(imported.dump_as_json(pretty_print=False))
    per_iteration = int(model.n_trees_per_iteration_)
    baseline = np.asarray(model._baseline_prediction, dtype=np.float64).reshape(-1)
    first = builder.ModelBuilder(
        threshold_type=header["threshold_type"],
        leaf_output_type=header["leaf_output_type"],
        metadata=builder.Metadata(
            num_feature=int(header["num_feature"]),
            task_type=header["task_type"],
            average_tree_output=bool(header["average_tree_output"]),
            num_target=int(header["num_target"]),
            num_class=[int(c) for c in header["num_class"]],
            leaf_vector_shape=(int(header["leaf_vector_shape"][0]), int(header["leaf_vector_shape"][1])),
        ),
        tree_annotation=builder.TreeAnnotation(
            num_tree=per_iteration,
            target_id=[0] * per_iteration,
            class_id=list(range(per_iteration)) if per_iteration > 1 else [0],
        ),
        postprocessor=builder.PostProcessorFunc(header["postprocessor"]),
        base_scores=[0.0] * len(header["base_scores"]),
    )
    for k in range(per_iteration):
        first.start_tree()
        first.start_node(0)
        first.leaf(float(baseline[k]))
        first.end_node()
        first.end_tree()
    joint = treelite.Model.concatenate([first.commit(), imported])
    fields = joint.get_header_accessor()
    fields.set_field("base_scores", np.zeros_like(fields.get_field("base_scores")))
    return joint


class CompiledTrees:
    """``predict_proba`` of one pipeline through its compiled trees; build it with ``verified``."""

    def __init__(self, bundle: ModelBundle, threads: int) -> None:
        if bundle.compiled_trees is None:
            raise NotSupported("the bundle has no compiled trees")
        try:
            import tl2cgen
        except ImportError as exc:
            raise NotSupported(f"tl2cgen is not installed ({exc.name})") from exc
        _quiet(tl2cgen)
        self._tl2cgen = tl2cgen
        self._pipeline = bundle.pipeline
        self._model, outer = read_outer(bundle.pipeline, bundle.schema)
        self._columns = _Prepared.of(outer, self._model)
        self.threads = threads
        self.records: Any = None  # a verified scoring.record_path.RecordPath, set by ``verified``
        # The library is loaded from the bytes whose hash the registry checked, written to a file
        # only this process can read: loading by path would let the file change after the check.
        folder = None
        try:
            folder = tempfile.mkdtemp(prefix="scorepipe-trees-")
            path = Path(folder) / "trees.so"
            path.write_bytes(bundle.compiled_trees)
            path.chmod(0o500)
            self._predictor = tl2cgen.Predictor(str(path), nthread=threads)
            self.library = ctypes.CDLL(str(path))  # the same file: one row at a time (scoring.record_path)
        except Exception as exc:  # noqa: BLE001 - no room for the file, or a library built for another machine
            raise NotSupported(f"the compiled trees do not load here: {type(exc).__name__}: {exc}") from exc
        finally:
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)  # mapped already; the path is no longer needed

    @classmethod
    def verified(cls, bundle: ModelBundle, *, threads: int | None = None) -> tuple[CompiledTrees | None, str]:
        """The compiled trees if they reproduce ``predict_proba`` exactly, else None; and what was decided."""
        threads = threads or _sklearn_threads()
        try:
            trees = cls(bundle, threads)
        except NotSupported as exc:
            reason = str((bundle.info.get(INFO_KEY) or {}).get("reason") or exc)
            return None, reason
        features = check_rows(bundle.reference, bundle.schema)
        if len(features) == 0:
            return None, "no reference rows to verify the compiled trees on"
        expected = bundle.pipeline.predict_proba(features)
        # Whole, and a few rows (the probes among them) in small frames: each row's value does not depend
        # on its frame, and a watcher reloading mid-stream shares the interpreter with the stream's loop.
        small = np.unique(np.r_[np.arange(min(_CHECK_SMALL, len(features))), len(features) - 2, len(features) - 1])
        small = small[small >= 0]
        try:
            whole = trees.predict_proba(features)
            chunks = [small[i : i + _CHECK_CHUNK] for i in range(0, len(small), _CHECK_CHUNK)]
            parts = np.vstack([trees.predict_proba(features.iloc[rows]) for rows in chunks])
        except Exception as exc:  # noqa: BLE001 - whatever went wrong, scikit-learn scores instead
            log.warning("compiled trees not used: %s: %s", type(exc).__name__, exc)
            return None, f"compiled trees failed on the reference sample: {type(exc).__name__}: {exc}"
        for got, want in ((whole, expected), (parts, expected[small])):
            if got.shape != want.shape or not np.array_equal(got, want):
                worst = float(np.nanmax(np.abs(got - want))) if got.shape == want.shape else float("nan")
                log.warning("compiled trees not used: they differ from predict_proba by up to %.3g", worst)
                return None, f"compiled trees differ from predict_proba on the reference sample (by up to {worst:.3g})"
        trees.records = _record_path(trees, bundle, features, expected)
        return trees, f"verified on {len(features)} rows, {threads} thread(s)"

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        """Probabilities for validated ``features`` (the schema's columns, cast by ``validate``)."""
        matrix = self._columns.matrix(features)
        margin = self._predictor.predict(self._tl2cgen.DMatrix(matrix, dtype="float64"), pred_margin=True)
        raw = np.asarray(margin, dtype=np.float64).reshape(len(matrix), -1)
        proba = self._model._loss.predict_proba(raw.ravel() if raw.shape[1] == 1 else raw)
        if len(ambiguous := _read_as_missing(matrix)):
            proba[ambiguous] = self._pipeline.predict_proba(features.iloc[ambiguous])
        return proba


@dataclass(frozen=True)
class _Prepared:
    """The trees' input computed column by column with lookup tables, as the fitted pipeline would."""

    features: tuple[str, ...]
    fills: tuple[float | None, ...]
    categories: tuple[pd.Index | None, ...]
    tables: tuple[np.ndarray | None, ...]  # per category's position, then [unknown, missing]

    @classmethod
    def of(cls, outer: list[Any], model: Any) -> _Prepared:
        known = _inner_categories(model, len(outer))
        features: list[str] = []
        fills: list[float | None] = []
        categories: list[pd.Index | None] = []
        tables: list[np.ndarray | None] = []
        for position, column in enumerate(outer):
            features.append(column.feature)
            fills.append(column.fill)
            if column.codes is None:
                categories.append(None)
                tables.append(None)
                continue
            seen = known.get(position)

            def final(code: float, seen: set[float] | None = seen) -> float:
                # The trees' own encoder turns a code it never saw into NaN (the missing-value branch).
                return code if seen is None or code in seen else np.nan

            names = list(column.codes)
            categories.append(pd.Index(names, dtype=object))
            tables.append(
                np.array([final(column.codes[n]) for n in names] + [final(column.unknown), final(column.missing)])
            )
        return cls(tuple(features), tuple(fills), tuple(categories), tuple(tables))

    def matrix(self, features: pd.DataFrame) -> np.ndarray:
        out = np.empty((len(features), len(self.features)), dtype=np.float64)
        for j, name in enumerate(self.features):
            index, table = self.categories[j], self.tables[j]
            if index is None or table is None:
                values = features[name].to_numpy(dtype=np.float64)
                fill = self.fills[j]
                out[:, j] = values if fill is None else np.where(np.isnan(values), fill, values)
                continue
            column = features[name]
            positions = index.get_indexer(pd.Index(column.to_numpy(dtype=object)))
            positions = np.where(positions < 0, len(index), positions)  # not a known category
            if not _same(table[-2], table[-1]):  # a missing value is coded unlike an unknown category
                positions = np.where(column.isna().to_numpy(), len(index) + 1, positions)
            out[:, j] = table[positions]
        return out


def _record_path(trees: CompiledTrees, bundle: ModelBundle, features: pd.DataFrame, expected: np.ndarray) -> Any:
    """The one-record route through the same library, if it reproduces ``expected`` row by row; else None."""
    from scoring.record_path import RecordPath

    try:
        path = RecordPath.build(trees.library, bundle.schema, trees._columns, trees._model)
        reason = path.verify(features, expected)
    except Exception as exc:  # noqa: BLE001 - a library without the entry point, or a shape it cannot fill
        reason = f"{type(exc).__name__}: {exc}"
    if reason is not None:
        log.warning("one-record path not used: %s", reason)
        return None
    return path


@ctypes.CFUNCTYPE(None, ctypes.c_char_p)
def _native_log(message: bytes) -> None:
    log.debug("tl2cgen: %s", message.decode("utf-8", "replace").strip())


def _quiet(tl2cgen: Any) -> None:
    """Send tl2cgen's native log lines to Python logging (it prints them to stdout, into a CLI's output)."""
    library = getattr(getattr(tl2cgen, "libloader", None), "_LIB", None)
    if library is not None:
        library.TL2cgenRegisterLogCallback(_native_log)
        library.TL2cgenRegisterWarningCallback(_native_log)


def _trusted(path: Path) -> bool:
    """Whether a cached library (or the cache folder) is ours alone: owned by this user, writable by no one else.

    A library read from the cache becomes a registered version's ``trees.so``, and loading one runs its
    code, so the cache is trusted like the virtualenv, and checked like it should be.
    """
    try:
        for item in (path, path.parent) if path.is_file() else (path,):
            status = item.stat()
            if status.st_uid != os.getuid() or status.st_mode & 0o022:
                return False
    except OSError:
        return False
    return True


def _read_as_missing(matrix: np.ndarray) -> np.ndarray:
    """Rows holding a value the compiled code would take for a missing one.

    The generated code keeps each input in a union and marks a missing value by the int -1 in its
    low 32 bits, so a present double whose low 32 bits are all ones (about one value in four billion,
    e.g. 100.00000000093132) is read as missing and may take the other branch. Those rows are scored
    by scikit-learn instead; no check on a sample could find such a value.
    """
    low = matrix.view(np.uint64) & np.uint64(0xFFFFFFFF)
    return np.flatnonzero(((low == np.uint64(0xFFFFFFFF)) & ~np.isnan(matrix)).any(axis=1))


def _same(a: float, b: float) -> bool:
    return bool(a == b or (a != a and b != b))


def _inner_categories(model: Any, n_outer: int) -> dict[int, set[float]]:
    """Per input position, the codes the trees' own categorical encoder knows."""
    inner = getattr(model, "_preprocessor", None)
    if inner is None:
        return {}
    known: dict[int, set[float]] = {}
    for _, transformer, mask in inner.transformers_:
        if not hasattr(transformer, "categories_"):
            continue
        mask = np.asarray(mask)
        positions = np.flatnonzero(mask) if mask.dtype == bool else mask.astype(int)
        for p, categories in zip(positions, transformer.categories_, strict=True):
            known[int(p)] = {float(c) for c in np.asarray(categories, dtype=np.float64) if c == c}
    if any(p >= n_outer for p in known):
        raise NotSupported("the trees' encoder reads columns outside the pipeline's output")
    return known


def _sklearn_threads() -> int:
    """The OpenMP threads scikit-learn's trees would use here (threadpoolctl limits included)."""
    from sklearn.utils._openmp_helpers import _openmp_effective_n_threads

    return int(_openmp_effective_n_threads())


def _versions() -> dict[str, str]:
    try:
        import tl2cgen
        import treelite
    except ImportError:
        return {}
    return {"treelite": str(treelite.__version__), "tl2cgen": str(tl2cgen.__version__)}


def _compiler_version(toolchain: str) -> str:
    import subprocess

    try:
        done = subprocess.run([toolchain, "--version"], capture_output=True, text=True, timeout=10)
        return done.stdout.partition("\n")[0]
    except (OSError, subprocess.SubprocessError):
        return "unknown"
