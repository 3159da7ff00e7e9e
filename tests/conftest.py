"""Shared fixtures. Fixtures that build things are factories, so each test gets its own copy."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from scoring import ModelBundle, Registry, Scorer, synthetic
from scoring.training import train_bundle


def pytest_configure(config: pytest.Config) -> None:
    """Keep Prefect's state out of the user's home and quiet, before anything imports prefect."""
    home = tempfile.mkdtemp(prefix="scorepipe-test-prefect-")
    os.environ["PREFECT_HOME"] = home
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ["DO_NOT_TRACK"] = "1"
    os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "90"
    os.environ.pop("PREFECT_API_URL", None)
    for name in [n for n in os.environ if n.startswith("SCOREPIPE_")]:
        del os.environ[name]


@pytest.fixture(scope="session")
def training_frame() -> pd.DataFrame:
    return synthetic.generate(6_000, seed=11)


@pytest.fixture(scope="session")
def bundle(training_frame: pd.DataFrame) -> ModelBundle:
    """The default pipeline trained once per session on a small synthetic set."""
    return train_bundle(
        training_frame,
        synthetic.TARGET,
        features=list(synthetic.FEATURES),
        bounds=synthetic.BOUNDS,
        reference_rows=500,
        seed=11,
    )


@pytest.fixture
def make_registry(tmp_path: Path, bundle: ModelBundle) -> Callable[..., Registry]:
    """Factory: a fresh registry in a temp folder, with ``versions`` copies of the bundle, v1 champion."""

    def make(versions: int = 1, *, name: str = "registry") -> Registry:
        registry = Registry(tmp_path / name)
        for _ in range(versions):
            registry.register(bundle, note="test")
        if versions:
            registry.promote(1, "champion")
        return registry

    return make


@pytest.fixture
def scorer(bundle: ModelBundle) -> Scorer:
    return Scorer(bundle, version=1)


@pytest.fixture
def write_parquet() -> Callable[[Path, pd.DataFrame], Path]:
    def write(path: Path, frame: pd.DataFrame) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
        return path

    return write


@pytest.fixture
def incoming_rows() -> Callable[..., pd.DataFrame]:
    """Factory: unlabelled transactions from a seed the model was not trained on."""

    def make(n: int, *, seed: int = 99, drifted: bool = False) -> pd.DataFrame:
        return synthetic.generate(n, seed=seed, drifted=drifted, with_target=False)

    return make


@pytest.fixture(scope="session")
def prefect_server():
    """One temporary Prefect server (SQLite) for every flow test of the session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
