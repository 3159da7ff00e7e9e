"""Compiled trees: built at registration, hash-checked, and used only where they reproduce predict_proba bit for bit."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from scoring import IntegrityError, Registry, Scorer, synthetic
from scoring.bundle import TREES_FILE
from scoring.compiled import INFO_KEY, CompiledTrees, TreeCompiler
from scoring.scorer import ScorerOptions
from scoring.training import bundle_from_estimator, default_pipeline
from scoring.validation import validate
from tests.conftest import TREES_CACHE
from tests.scoring.test_fastpath import _awkward_rows, last_bit_off


def _exact(trees: CompiledTrees, pipeline, features: pd.DataFrame) -> None:
    expected = pipeline.predict_proba(features)
    for size in (1, 5, 600, len(features)):
        got = np.vstack([trees.predict_proba(features.iloc[i : i + size]) for i in range(0, len(features), size)])
        np.testing.assert_array_equal(got, expected)  # exact: no tolerance


def _small_bundle(frame: pd.DataFrame, target: str, features: list[str], *, iterations: int = 25):
    """The default pipeline's shape with fewer trees (quick to compile), as a bundle."""
    schema_frame = frame[[*features, target]]
    from scoring.schema import learn_schema

    schema = learn_schema(schema_frame, features)
    pipeline = default_pipeline(schema, seed=3).set_params(model__max_iter=iterations)
    pipeline.fit(validate(schema_frame, schema).features, schema_frame[target])
    return bundle_from_estimator(pipeline, schema_frame.head(400), target=target)


def test_the_default_pipeline_compiles_and_scores_exactly_on_missing_and_unknown_values(bundle):
    assert bundle.compiled_trees is not None, bundle.info.get(INFO_KEY)
    assert bundle.info[INFO_KEY]["route"] == "tl2cgen"
    features = validate(_awkward_rows(bundle.schema, 3_000, seed=8), bundle.schema).features
    assert features.isna().any().any()
    for threads in (1, 2):
        trees, reason = CompiledTrees.verified(bundle, threads=threads)
        assert trees is not None, reason
        assert f"{threads} thread(s)" in reason
        _exact(trees, bundle.pipeline, features)


def test_multiclass_trees_compile_exactly():
    frame = synthetic.generate(3_000, seed=21)
    frame["segment"] = np.select([frame["amount"] < 40, frame["amount"] < 200], ["low", "mid"], "high")
    features = [f for f in synthetic.FEATURES if f != "amount"]
    compiled = TreeCompiler(cache=TREES_CACHE).attach(_small_bundle(frame, "segment", features))
    trees, reason = CompiledTrees.verified(compiled)
    assert trees is not None, reason
    _exact(trees, compiled.pipeline, validate(_awkward_rows(compiled.schema, 900, seed=9), compiled.schema).features)


def test_a_category_missing_in_training_is_left_to_sklearn():
    """A missing category seen in training gets its own code, which neither fast path replays: both say so."""
    frame = synthetic.generate(3_000, seed=22)
    frame.loc[frame.index % 7 == 0, "channel"] = None
    compiled = TreeCompiler(cache=TREES_CACHE).attach(_small_bundle(frame, synthetic.TARGET, list(synthetic.FEATURES)))
    assert compiled.compiled_trees is None
    assert "learned a missing value as a category of 'channel'" in compiled.info[INFO_KEY]["reason"]
    scorer = Scorer(compiled, 1)
    assert not scorer.compiled_trees and not scorer.small_frame_shortcut
    rows = _awkward_rows(compiled.schema, 900, seed=10)
    checked = validate(rows, compiled.schema)
    np.testing.assert_array_equal(
        scorer.score(rows)[scorer.proba_columns].to_numpy()[checked.valid],
        compiled.pipeline.predict_proba(checked.features[checked.valid]),
    )


def test_without_a_c_compiler_the_version_registers_and_sklearn_scores_it(bundle, tmp_path):
    plain = dataclasses.replace(bundle, compiled_trees=None)
    registry = Registry(tmp_path / "registry")
    version = registry.register(plain, trees=TreeCompiler(toolchain="no-such-cc", cache=None))
    assert TREES_FILE not in registry.info(version).files
    loaded = registry.load(version).bundle
    assert "no C compiler (no-such-cc) on PATH" in loaded.info[INFO_KEY]["reason"]
    scorer = Scorer(loaded, version)
    assert not scorer.compiled_trees and "no C compiler" in scorer.compiled_trees_reason
    rows = synthetic.generate(700, seed=3, with_target=False)
    np.testing.assert_array_equal(
        scorer.score(rows)[scorer.proba_columns].to_numpy(), bundle.pipeline.predict_proba(rows[bundle.schema.names])
    )


def test_the_library_is_in_the_manifest_and_a_swapped_one_is_never_loaded(bundle, tmp_path):
    registry = Registry(tmp_path / "registry")
    version = registry.register(bundle)
    files = registry.info(version).files
    assert TREES_FILE in files
    assert Scorer.from_registry(registry, version).compiled_trees
    library = tmp_path / "registry" / "versions" / f"{version:06d}" / TREES_FILE
    assert library.is_file()
    library.write_bytes(library.read_bytes() + b"\0")
    with pytest.raises(IntegrityError, match=TREES_FILE):
        registry.load(version)


def test_trees_that_differ_in_the_last_bit_are_refused_and_sklearn_scores(bundle, monkeypatch, caplog):
    monkeypatch.setattr(CompiledTrees, "predict_proba", last_bit_off(CompiledTrees.predict_proba))
    scorer = Scorer(bundle, 1)
    assert not scorer.compiled_trees
    assert "differ from predict_proba" in scorer.compiled_trees_reason and "differ from predict_proba" in caplog.text
    rows = synthetic.generate(700, seed=4, with_target=False)
    np.testing.assert_array_equal(
        scorer.score(rows)[scorer.proba_columns].to_numpy(), bundle.pipeline.predict_proba(rows[bundle.schema.names])
    )


def test_the_same_trees_are_compiled_once(bundle, monkeypatch, tmp_path):
    import tl2cgen

    cache = tmp_path / "trees"
    plain = dataclasses.replace(bundle, compiled_trees=None)
    first = TreeCompiler(cache=cache).attach(plain)
    assert first.compiled_trees is not None and len(list(cache.glob("*.so"))) == 1

    def no_compiler(*args, **kwargs):
        raise AssertionError("compiled again")

    monkeypatch.setattr(tl2cgen, "export_lib", no_compiler)
    again = TreeCompiler(cache=cache).attach(plain)
    assert again.compiled_trees == first.compiled_trees


def test_other_models_are_registered_without_compiled_trees_and_say_why(training_frame):
    from sklearn.linear_model import LogisticRegression

    numeric = list(synthetic.NUMERIC_FEATURES)
    reference = training_frame.iloc[:400][[*numeric, synthetic.TARGET]].fillna(0)
    estimator = LogisticRegression(max_iter=300).fit(reference[numeric], reference[synthetic.TARGET])
    other = TreeCompiler(cache=TREES_CACHE).attach(bundle_from_estimator(estimator, reference, target=synthetic.TARGET))
    assert other.compiled_trees is None and other.info[INFO_KEY]["route"] is None
    assert "Pipeline" in other.info[INFO_KEY]["reason"]
    assert not Scorer(other, 1).compiled_trees


def test_the_setting_turns_compiled_trees_off(bundle):
    off = Scorer(bundle, 1, options=ScorerOptions(compiled_trees=False))
    assert not off.compiled_trees and off.compiled_trees_reason == "off by setting"


def test_a_scorer_told_its_threads_runs_and_verifies_its_trees_on_them(bundle):
    """The stream scores on one OpenMP thread but loads models on other threads: it says so, and is obeyed."""
    one = Scorer(bundle, 1, options=ScorerOptions(threads=1))
    assert one.compiled_trees and one.compiled_trees_reason.endswith(", 1 thread(s)")
    rows = synthetic.generate(3000, seed=4, with_target=False)
    expected = bundle.pipeline.predict_proba(validate(rows, bundle.schema).features)
    assert np.array_equal(one.score(rows)[one.proba_columns].to_numpy(), expected)


def _low_word_all_ones(value: float) -> float:
    import struct

    bits = struct.unpack("<Q", struct.pack("<d", value))[0]
    return struct.unpack("<d", struct.pack("<Q", (bits & ~0xFFFFFFFF) | 0xFFFFFFFF))[0]


def test_values_the_compiled_code_would_read_as_missing_are_scored_by_sklearn(bundle):
    """tl2cgen marks a missing input by -1 in a double's low 32 bits: such present values go to sklearn."""
    trees, reason = CompiledTrees.verified(bundle, threads=1)
    assert trees is not None, reason
    rows = synthetic.generate(1_000, seed=3, with_target=False)
    rows.loc[::3, "amount"] = [_low_word_all_ones(v) for v in rows.loc[::3, "amount"]]  # e.g. 100.00000000093132
    features = validate(rows, bundle.schema).features
    _exact(trees, bundle.pipeline, features)


def test_a_cache_others_can_write_to_is_not_read(bundle, monkeypatch, tmp_path):
    import tl2cgen

    cache = tmp_path / "trees"
    plain = dataclasses.replace(bundle, compiled_trees=None)
    TreeCompiler(cache=cache).attach(plain)
    cache.chmod(0o777)  # anyone could have put a library here
    built = []
    real = tl2cgen.export_lib
    monkeypatch.setattr(tl2cgen, "export_lib", lambda *a, **k: built.append(1) or real(*a, **k))
    assert TreeCompiler(cache=cache).attach(plain).compiled_trees is not None
    assert built == [1]  # compiled again, not taken from the cache


def test_building_and_loading_print_nothing_on_stdout(bundle, tmp_path, capfd):
    """A CLI's output (tables, JSON) stays its own: tl2cgen's log lines go to logging instead."""
    plain = dataclasses.replace(bundle, compiled_trees=None)
    TreeCompiler(cache=tmp_path / "trees").attach(plain)
    CompiledTrees.verified(bundle)
    out, _ = capfd.readouterr()
    assert out == ""
