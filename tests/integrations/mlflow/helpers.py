"""Models logged to the test MLflow server the way teams log theirs, for the import and follow tests."""

from __future__ import annotations

from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

from scoring import synthetic

TREES = ["sklearn.tree._tree.Tree"]  # MLflow's own save refuses forests without it


def fitted(train, *, seed=3, features=synthetic.FEATURES, labels=None):
    """A forest behind one-hot encoding: what a team typically logs (every type is scikit-learn's or numpy's)."""
    frame = train[list(features)]
    categorical = [c for c in frame.columns if frame[c].dtype == object]
    encode = ColumnTransformer([("categories", OneHotEncoder(handle_unknown="ignore"), categorical)],
                               remainder="passthrough")  # fmt: skip
    forest = RandomForestClassifier(n_estimators=30, min_samples_leaf=5, random_state=seed, n_jobs=1)
    return make_pipeline(encode, forest).fit(frame, train[synthetic.TARGET] if labels is None else labels)


def log(server, model, features, *, name=None, dataset=None, **options):
    """Log ``model`` in a run (sklearn flavour, signature, explicit requirements); register it under ``name``.

    ``dataset`` (a path to the training Parquet) is logged as the run's training input.
    """
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature

    mlflow.set_tracking_uri(server.tracking_uri)
    signature = infer_signature(features, model.predict_proba(features))
    with mlflow.start_run() as run:
        if dataset is not None:
            import pandas as pd

            frame = pd.read_parquet(dataset)
            mlflow.log_input(mlflow.data.from_pandas(frame, source=str(dataset)), context="training")
        info = mlflow.sklearn.log_model(
            model, name="model", signature=signature, registered_model_name=name, pip_requirements=["scikit-learn"],
            **options,
        )  # fmt: skip
    return run.info.run_id, info
