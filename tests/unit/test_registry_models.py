"""Registry helpers against a real SQLite MLflow store; registry errors are never read as "no champion"."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import TEMPORARILY_UNAVAILABLE

from intent_mlops.registry import models
from intent_mlops.registry.champion import move_champion
from tests.unit.test_inference_predictor import tiny_classifier  # noqa: F401  (fixture)


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


def _run_with_hashes(tmp_path: Path, hashes: list[str] | None) -> str:
    """A finished run in this store (artifacts in tmp), with ``hashes`` as its train-set record unless None."""
    from intent_mlops.registry.champion import log_train_hashes

    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name("lineage")
    exp_id = exp.experiment_id if exp else client.create_experiment("lineage", str(tmp_path / "artifacts"))
    run_id = str(client.create_run(exp_id).info.run_id)
    if hashes is not None:
        log_train_hashes(run_id, hashes)
    return run_id


def _flaky_reads(monkeypatch: pytest.MonkeyPatch, failures: int) -> list[str]:
    """The artifact read raises OSError (a dropped connection, an HTTP 5xx) the first ``failures`` times."""
    real, calls = mlflow.artifacts.load_text, []

    def load_text(uri: str) -> str:
        calls.append(uri)
        if len(calls) <= failures:
            raise OSError("503 Server Error: Service Unavailable")
        return real(uri)

    monkeypatch.setattr(mlflow.artifacts, "load_text", load_text)
    monkeypatch.setattr("intent_mlops.registry.champion.LINEAGE_RETRY_SECONDS", 0.0)
    return calls


def test_champion_lineage_read_retries_a_transient_error(
    store: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from intent_mlops.registry.champion import train_hashes

    run_id = _run_with_hashes(tmp_path, ["h1", "h2"])
    calls = _flaky_reads(monkeypatch, failures=1)
    assert train_hashes(run_id) == {"h1", "h2"} and len(calls) == 2
    assert train_hashes(_run_with_hashes(tmp_path, None)) is None  # a run that predates the record: nothing to exclude


def test_unreadable_champion_lineage_fails_before_any_comparison(
    store: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from intent_mlops.config.params import Config
    from intent_mlops.data.versioning import Splits
    from intent_mlops.registry.champion import Champion, LineageUnreadable, train_hashes
    from tasks.promotion import compare_models

    run_id = _run_with_hashes(tmp_path, ["h1"])
    calls = _flaky_reads(monkeypatch, failures=99)
    with pytest.raises(LineageUnreadable) as err:
        train_hashes(run_id)
    assert len(calls) == 3  # retried, then given up
    message = str(err.value)
    assert "\n" not in message and "lineage/train_text_hashes.txt" in message and run_id in message
    assert "503" in message
    # the decision step stops there: no comparison on an unknown overlap ("0 excluded")
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "dev.csv").write_text("text,label\nwhere is my order,track_order\n")
    splits = Splits(folder=tmp_path / "splits", md5="x")
    with pytest.raises(LineageUnreadable):
        compare_models.fn(Config(), str(tmp_path), tmp_path / "challenger", Champion("1", run_id, {}), splits)


LINEAGE = {"data.md5": "d" * 32, "data.rev": "workspace", "git.commit": "c" * 40, "params.md5": "p" * 32,
           "splits.md5": "s" * 32}  # fmt: skip
ON_THE_VERSION = {
    *LINEAGE, "serving.backend", "serving.batch_backend",
    "promotion.decision", "promotion.kind", "promotion.reason", "promotion.champion_version", "promotion.gain",
    "promotion.ci_low",
}  # fmt: skip


def test_a_version_carries_the_tags_a_reviewer_scans_and_the_run_keeps_the_rest(
    store: str,
    tiny_classifier: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    """MLflow's versions table shows every version tag, truncated: the version keeps lineage, serving and
    the decision's headline; calibration, statistics and record-keeping tags go on the run (and the card)."""
    import shutil

    from intent_mlops.config.params import Config
    from intent_mlops.registry.card import write_card
    from intent_mlops.registry.champion import record_decision
    from intent_mlops.registry.promotion import decide

    client = mlflow.MlflowClient()
    exp = client.create_experiment("tags", artifact_location=str(tmp_path / "artifacts"))
    with mlflow.start_run(experiment_id=exp) as run:
        mlflow.set_tags(LINEAGE)  # as the training flow's open-run does
        model = Path(shutil.copytree(tiny_classifier, tmp_path / "m"))
        registered = models.log_and_register(model, "m", ["hello there"], LINEAGE)
    truth = ["a", "b"] * 20
    decision = decide(truth, truth[::-1], truth, Config().promotion, champion_version="1",
                      challenger_version=registered.version)  # fmt: skip
    record_decision("m", run.info.run_id, decision, {"prefect.flow_run_id": "f" * 32, **LINEAGE})

    on_version = set(client.get_model_version("m", registered.version).tags)
    assert on_version <= ON_THE_VERSION, sorted(on_version - ON_THE_VERSION)
    assert len(on_version) <= 13 and {*LINEAGE, "serving.backend", "promotion.decision"} <= on_version
    on_run = client.get_run(run.info.run_id).data.tags
    on_the_run_only = ("ood.score", "promotion.p_value", "promotion.test", "promotion.ci_high",
                       "promotion.excluded_rows", "promotion.challenger_version", "promotion.time")  # fmt: skip
    for key in (*on_the_run_only, "serving.backend", "prefect.flow_run_id"):
        assert key in on_run, key
    card = write_card("m", registered.version, Config(), {"train": 40})
    assert f"online endpoint: `{on_run['serving.backend']}`" in card and "out of scope: `none`" in card, card
