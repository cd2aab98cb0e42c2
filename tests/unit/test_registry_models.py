"""Registry helpers against a real SQLite MLflow store; registry errors are never read as "no champion"."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import TEMPORARILY_UNAVAILABLE

from intent_mlops.registry import models
from intent_mlops.registry.champion import move_champion


@pytest.fixture
def store(tmp_path: Path) -> str:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def test_missing_model_has_no_aliases(store: str) -> None:
    assert models.aliases("no-such-model") == {}


def test_transient_registry_error_propagates_and_crowns_nothing(store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    client = mlflow.MlflowClient()
    client.create_registered_model("m")

    def down(self: object, name: str) -> None:
        raise MlflowException("database is locked", error_code=TEMPORARILY_UNAVAILABLE)

    monkeypatch.setattr(mlflow.MlflowClient, "get_registered_model", down)
    with pytest.raises(MlflowException, match="locked"):
        models.aliases("m")
    with pytest.raises(MlflowException, match="locked"):
        move_champion("m", "1", expected=None)
    monkeypatch.undo()
    assert client.get_registered_model("m").aliases == {}
