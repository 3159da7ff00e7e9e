"""Importing models from a real MLflow tracking server: skops and cloudpickle, registry and run URIs, refusals."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import make_pipeline

from integrations.mlflow.models import MLflowImportError, import_model
from scorepipe.cli import main
from scoring import Registry, SchemaError, Scorer, SettingsError, synthetic
from tests.integrations.mlflow.helpers import TREES, fitted, log

pytestmark = pytest.mark.integration


class Passthrough(BaseEstimator, TransformerMixin):
    """A type from outside scikit-learn, numpy and scipy: a skops file holding it must be refused."""

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return X


@pytest.fixture(scope="module")
def frames():
    train = synthetic.generate(4000, seed=11)
    held_out = synthetic.generate(500, seed=12, with_target=False).drop(columns=[synthetic.ID_COLUMN])
    return train, held_out


def test_an_aliased_skops_forest_imports_with_the_mlflow_models_own_probabilities(
    mlflow_server, frames, tmp_path, monkeypatch
):
    import mlflow
    import mlflow.sklearn

    train, held_out = frames
    features = train[list(synthetic.FEATURES)]
    name = f"fraud-{uuid.uuid4().hex[:6]}"
    run_id, _ = log(mlflow_server, fitted(train), features, name=name, skops_trusted_types=TREES)
    client = mlflow.MlflowClient(mlflow_server.tracking_uri)
    client.set_registered_model_alias(name, "champion", "1")

    reference = tmp_path / "reference.parquet"
    train.to_parquet(reference)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.tracking_uri)
    monkeypatch.setenv("SCOREPIPE_HOME", str(tmp_path / "home"))
    assert main(["models", "import", f"models:/{name}@champion", "--reference", str(reference),
                 "--target", synthetic.TARGET, "--alias", "champion"]) == 0  # fmt: skip

    registry = Registry(tmp_path / "home" / "registry")
    scorer = Scorer.from_registry(registry)
    theirs = mlflow.sklearn.load_model(f"models:/{name}@champion").predict_proba(held_out[list(synthetic.FEATURES)])
    ours = scorer.score(held_out)[scorer.proba_columns].to_numpy()
    assert np.array_equal(ours, theirs)
    lineage = scorer.bundle.info["mlflow"]
    assert (lineage["model_name"], lineage["model_version"], lineage["run_id"]) == (name, "1", run_id)
    assert len(lineage["artifact_sha256"]["model.skops"]) == 64 and "MLmodel" in lineage["artifact_sha256"]
    assert scorer.bundle.metrics["roc_auc"] > 0.75


def test_a_cloudpickle_model_from_a_run_uri_imports(mlflow_server, frames):
    train, held_out = frames
    model = fitted(train)
    run_id, _ = log(mlflow_server, model, train[list(synthetic.FEATURES)], serialization_format="cloudpickle")
    bundle, source = import_model(
        f"runs:/{run_id}/model", train, target=synthetic.TARGET, tracking_uri=mlflow_server.tracking_uri
    )
    assert (source.name, source.run_id) == (None, run_id) and "model.pkl" in source.digests
    features = held_out[list(synthetic.FEATURES)]
    assert np.array_equal(bundle.pipeline.predict_proba(features), model.predict_proba(features))


def test_a_skops_file_holding_a_foreign_type_is_refused_by_name(mlflow_server, frames):
    train, _ = frames
    numeric = [c for c in synthetic.FEATURES if train[c].dtype != object]
    forest = RandomForestClassifier(n_estimators=5, random_state=1)
    model = make_pipeline(Passthrough(), forest).fit(train[numeric], train[synthetic.TARGET])
    foreign = f"{__name__}.Passthrough"
    run_id, _ = log(mlflow_server, model, train[numeric], skops_trusted_types=[foreign, *TREES])
    with pytest.raises(MLflowImportError, match=f"types outside scikit-learn, numpy and scipy.*{foreign}"):
        import_model(f"runs:/{run_id}/model", train, target=None, tracking_uri=mlflow_server.tracking_uri)


def test_a_model_that_is_not_sklearn_or_does_not_match_its_reference_is_refused(mlflow_server, frames):
    import mlflow
    import mlflow.pyfunc

    train, _ = frames

    class Constant(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input):
            return [0] * len(model_input)

    mlflow.set_tracking_uri(mlflow_server.tracking_uri)
    with mlflow.start_run() as run:
        mlflow.pyfunc.log_model(name="model", python_model=Constant(), pip_requirements=["mlflow"])
    with pytest.raises(MLflowImportError, match="not an sklearn-flavoured model \\(flavors: python_function\\)"):
        import_model(f"runs:/{run.info.run_id}/model", train, target=None, tracking_uri=mlflow_server.tracking_uri)

    run_id, _ = log(mlflow_server, fitted(train), train[list(synthetic.FEATURES)], skops_trusted_types=TREES)
    with pytest.raises(SchemaError, match="amount: in the model's signature, missing from the reference data"):
        import_model(f"runs:/{run_id}/model", train.drop(columns=["amount"]), target=None,
                     tracking_uri=mlflow_server.tracking_uri)  # fmt: skip
    with pytest.raises(MLflowImportError, match="RESOURCE_DOES_NOT_EXIST|not found|No such"):
        import_model("models:/no-such-model@champion", train, target=None, tracking_uri=mlflow_server.tracking_uri)


def test_without_reference_data_the_input_example_is_used_and_without_one_the_import_says_what_to_pass(
    mlflow_server, frames
):
    train, _ = frames
    features = train[list(synthetic.FEATURES)]
    example = features.dropna().head(50)
    run_id, _ = log(mlflow_server, fitted(train), features, skops_trusted_types=TREES, input_example=example)
    bundle, _ = import_model(f"runs:/{run_id}/model", None, target=None, tracking_uri=mlflow_server.tracking_uri)
    assert bundle.info["mlflow"]["reference"] == "the input example logged with the model (50 rows)"
    assert len(bundle.reference) == 50 and bundle.schema.names == list(synthetic.FEATURES)

    run_id, _ = log(mlflow_server, fitted(train), features, skops_trusted_types=TREES)
    with pytest.raises(MLflowImportError, match="no reference data: pass --reference FILE .* or an input_example"):
        import_model(f"runs:/{run_id}/model", None, target=None, tracking_uri=mlflow_server.tracking_uri)
    with pytest.raises(SettingsError, match="no MLflow tracking server: set MLFLOW_TRACKING_URI"):
        import_model(f"runs:/{run_id}/model", None, target=None, tracking_uri=None)
