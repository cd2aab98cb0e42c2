"""The decision history's rules against a real SQLite MLflow store: what a retrain on the same data and
params does (skip, and why, or decide again), rollbacks that hold, checked and recorded, and reading a
recorded decision only as "none" when there is none."""

from __future__ import annotations

import re
from pathlib import Path

import mlflow
import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import TEMPORARILY_UNAVAILABLE

from intent_mlops.config.params import PromotionConfig
from intent_mlops.registry import champion as champ
from intent_mlops.registry.history import history_table
from intent_mlops.registry.models import CHAMPION, PREVIOUS_CHAMPION, aliases
from intent_mlops.registry.promotion import decide, reviewed

MODEL = "m"
Y = ["a"] * 6 + ["b"] * 6  # a perfect challenger beats an all-"a" champion; all-"a" alone is below the floor


@pytest.fixture
def store(tmp_path: Path) -> tuple[mlflow.MlflowClient, str]:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = mlflow.MlflowClient(uri, uri)
    exp = client.create_experiment(MODEL, artifact_location=(tmp_path / "artifacts").as_uri())
    client.create_registered_model(MODEL)
    return client, exp


def _version(client: mlflow.MlflowClient, exp: str, data: str, params: str = "p", dev_f1: float = 0.9) -> str:
    lineage = {"data.md5": data, "params.md5": params}
    run = client.create_run(exp, tags=lineage).info.run_id
    client.log_metric(run, "dev_macro_f1", dev_f1)
    client.log_text(run, "weights", "model/MLmodel")
    return str(client.create_model_version(MODEL, f"runs:/{run}/model", run_id=run, tags=lineage).version)


def _record(client: mlflow.MlflowClient, version: str, against: str | None, better: bool, **review: object) -> str:
    """Decide ``version`` against ``against`` (None: the floor alone), record it, move the alias if promoted."""
    champion_pred = None if against is None else ["a"] * 12
    decision = decide(Y, champion_pred, Y if better else ["a"] * 12, PromotionConfig(),
                      champion_version=against, challenger_version=version)  # fmt: skip
    if review:
        decision = reviewed(decision, review["approved"], "", str(review["note"]))  # type: ignore[arg-type]
    run_id = str(client.get_model_version(MODEL, version).run_id)
    champ.record_decision(MODEL, run_id, decision, {})
    if decision.promoted:
        assert champ.move_champion(MODEL, version, against) == (True, version)
    return decision.decision


def _lock(tmp_path: Path, timeout: float = 5) -> object:
    return champ.promotion_lock(tmp_path / "promotion.lock", timeout_seconds=timeout)


def test_a_rollback_holds_for_the_data_and_params_of_the_version_rolled_back_from(
    store: tuple[mlflow.MlflowClient, str], tmp_path: Path
) -> None:
    client, exp = store
    v1, v2 = _version(client, exp, "D1"), _version(client, exp, "D2")
    assert (_record(client, v1, None, True), _record(client, v2, v1, True)) == ("promoted", "promoted")

    tags = champ.rollback(MODEL, exp, None, "bad answers on refunds", "rita", _lock(tmp_path), floor=0.5)  # type: ignore[arg-type]
    assert aliases(MODEL)[CHAMPION] == "1" and tags["promotion.kind"] == "rollback"
    now = champ.current_champion(MODEL)
    prior = champ.prior_decision(MODEL, "D2", "p", now)
    assert prior is not None and (prior.rule, prior.version) == ("rolled-back", "2")
    assert "rolled back by rita at " in prior.message and "bad answers on refunds" in prior.message
    assert champ.prior_decision(MODEL, "D2", "other-params", now) is None, "new params: train"
    assert champ.prior_decision(MODEL, "D3", "p", now) is None, "new data: train"

    # a crash rerun applying v2's recorded promotion finds the rollback since then, and moves nothing
    assert champ.recorded_decision(MODEL, v2)["decision"] == "promoted"  # type: ignore[index]
    assert champ.move_champion(MODEL, v2, expected=v1) == (False, "1")
    assert aliases(MODEL)[CHAMPION] == "1"

    # a person crowning v2 again lifts the hold: the champion rule applies to its data again
    champ.rollback(MODEL, exp, v2, "refund fix confirmed", "rita", _lock(tmp_path), floor=0.5)  # type: ignore[arg-type]
    assert champ.rolled_back(MODEL, v2) is None
    prior = champ.prior_decision(MODEL, "D2", "p", champ.current_champion(MODEL))
    assert prior is not None and (prior.rule, prior.version) == ("champion", "2")


def test_rollback_waits_for_the_promotion_lock_and_moves_nothing_without_it(
    store: tuple[mlflow.MlflowClient, str], tmp_path: Path
) -> None:
    from filelock import FileLock, Timeout

    client, exp = store
    v1, v2 = _version(client, exp, "D1"), _version(client, exp, "D2")
    _record(client, v1, None, True)
    _record(client, v2, v1, True)
    runs_before = len(client.search_runs([exp]))
    with FileLock(str(tmp_path / "promotion.lock")), pytest.raises(Timeout):  # a promotion holds it
        champ.rollback(MODEL, exp, None, "bad", "rita", _lock(tmp_path, timeout=0.3))  # type: ignore[arg-type]
    assert aliases(MODEL)[CHAMPION] == "2" and champ.rolled_back(MODEL, v2) is None
    assert len(client.search_runs([exp])) == runs_before, "nothing recorded"


def test_first_model_refused_by_the_floor_skips_like_any_refusal(store: tuple[mlflow.MlflowClient, str]) -> None:
    client, exp = store
    v1 = _version(client, exp, "D1")
    assert _record(client, v1, None, False) == "refused"
    prior = champ.prior_decision(MODEL, "D1", "p", None)
    assert prior is not None and (prior.rule, prior.version) == ("refused", "1")
    assert prior.message == (
        "version 1, trained on this data and params, was refused on min_macro_f1 against the floor (no champion yet)"
    )


def test_a_refusal_names_its_criterion_and_holds_only_against_that_champion(
    store: tuple[mlflow.MlflowClient, str],
) -> None:
    client, exp = store
    v1, v2 = _version(client, exp, "D1"), _version(client, exp, "D2")
    _record(client, v1, None, True)
    assert _record(client, v2, v1, False) == "refused"
    prior = champ.prior_decision(MODEL, "D2", "p", champ.current_champion(MODEL))
    assert prior is not None and prior.rule == "refused"
    assert prior.message == (
        "version 2, trained on this data and params, was refused on significance, min_macro_f1 "
        "against champion version 1"
    )
    v3 = _version(client, exp, "D3")
    _record(client, v3, v1, True)
    assert champ.prior_decision(MODEL, "D2", "p", champ.current_champion(MODEL)) is None, "another champion now"


def test_an_unanswered_approval_is_undecided_and_decided_again(store: tuple[mlflow.MlflowClient, str]) -> None:
    client, exp = store
    v1, v2 = _version(client, exp, "D1"), _version(client, exp, "D2")
    _record(client, v1, None, True)
    assert _record(client, v2, v1, True, approved=None, note="no approval within 2 s") == "undecided"
    assert aliases(MODEL)[CHAMPION] == "1"
    assert champ.recorded_decision(MODEL, v2) is None, "nothing decided: the decision step runs again"
    prior = champ.prior_decision(MODEL, "D2", "p", champ.current_champion(MODEL))
    assert prior is not None and (prior.rule, prior.version) == ("undecided", "2")

    # deciding it again keeps the earlier record in the history
    assert champ.archive_decision(MODEL, v2)
    _record(client, v2, v1, True)
    rows = champ.history(exp)
    assert [(r["promotion.decision"], r["promotion.challenger_version"]) for r in rows] == [
        ("promoted", "1"), ("undecided", "2"), ("promoted", "2"),
    ]  # fmt: skip


def test_only_a_missing_report_counts_as_not_recorded(
    store: tuple[mlflow.MlflowClient, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, exp = store
    v1 = _version(client, exp, "D1")
    _record(client, v1, None, True)
    real = mlflow.artifacts.load_text

    for error in (MlflowException("database is locked", error_code=TEMPORARILY_UNAVAILABLE), OSError("HTTP 503")):

        def down(*args: object, error: Exception = error, **kwargs: object) -> str:
            raise error

        monkeypatch.setattr(mlflow.artifacts, "load_text", down)
        with pytest.raises(type(error)):
            champ.recorded_decision(MODEL, v1)
    monkeypatch.setattr(mlflow.artifacts, "load_text", real)
    assert champ.recorded_decision(MODEL, v1)["decision"] == "promoted"  # type: ignore[index]

    # tags written, report not (a crash between the two): really not recorded, decided again
    v2 = _version(client, exp, "D2")
    client.set_model_version_tag(MODEL, v2, "promotion.decision", "refused")
    assert champ.recorded_decision(MODEL, v2) is None


def test_rollback_refuses_a_target_below_the_floor_or_refused_unless_forced(
    store: tuple[mlflow.MlflowClient, str], tmp_path: Path
) -> None:
    client, exp = store
    v1, v2, v3 = _version(client, exp, "D1"), _version(client, exp, "D2"), _version(client, exp, "D3", dev_f1=0.17)
    _record(client, v1, None, True)
    _record(client, v2, v1, False)
    lock = tmp_path / "promotion.lock"
    with pytest.raises(ValueError, match=r"version 2 was refused \(failed significance .*0\.5000\)\); pass --force"):
        champ.rollback(MODEL, exp, v2, "try", "rita", champ.promotion_lock(lock), floor=0.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"version 3 has dev macro-F1 0\.1700, below the floor .* 0\.5000; .*--force"):
        champ.rollback(MODEL, exp, v3, "try", "rita", champ.promotion_lock(lock), floor=0.5)  # type: ignore[arg-type]
    assert aliases(MODEL) == {CHAMPION: "1"} and len(champ.history(exp)) == 2, "nothing moved or recorded"

    tags = champ.rollback(MODEL, exp, v3, "demo", "rita", champ.promotion_lock(lock), floor=0.5, force=True)  # type: ignore[arg-type]
    assert tags["promotion.kind"] == "manual", "version 3 was never champion"
    tags = champ.rollback(MODEL, exp, None, "back", "rita", champ.promotion_lock(lock), floor=0.5)  # type: ignore[arg-type]
    assert tags["promotion.kind"] == "rollback" and aliases(MODEL)[CHAMPION] == "1"
    rows = champ.history(exp, MODEL)
    assert [(r["promotion.decision"], r.get("promotion.kind")) for r in rows[-2:]] == [
        ("rollback", "manual"), ("rollback", "rollback"),
    ]  # fmt: skip


def test_history_shows_a_champion_alias_moved_outside_the_project(store: tuple[mlflow.MlflowClient, str]) -> None:
    client, exp = store
    v1, v2 = _version(client, exp, "D1"), _version(client, exp, "D2")
    _record(client, v1, None, True)
    assert champ.history(exp, MODEL)[-1]["promotion.decision"] == "promoted", "all moves recorded"
    client.set_registered_model_alias(MODEL, CHAMPION, v2)  # MLflow UI's alias button
    last = champ.history(exp, MODEL)[-1]
    assert (last["promotion.decision"], last["promotion.kind"]) == ("unrecorded", "manual")
    assert (last["promotion.champion_version"], last["promotion.challenger_version"]) == ("1", "2")
    assert "no recorded decision moved it there" in last["promotion.reason"]
    assert PREVIOUS_CHAMPION not in aliases(MODEL)


def test_history_columns_align() -> None:
    rows = [
        {"promotion.time": "2026-01-01T03:00:00.000001Z", "promotion.decision": "promoted", "promotion.kind":
         "first-model", "promotion.champion_version": "none", "promotion.challenger_version": "1",
         "data.md5": "0123456789abcdef", "promotion.gain": "none", "promotion.reason": "promoted: floor met"},
        {"promotion.time": "2026-01-02T03:00:00.000001Z", "promotion.decision": "rollback", "promotion.kind":
         "rollback", "promotion.champion_version": "12", "promotion.challenger_version": "1", "data.md5": "ab",
         "promotion.gain": "0.0153", "prefect.flow_run_id": "5f0e6a2c-aaaa", "promotion.reason": "bad model"},
    ]  # fmt: skip
    lines = history_table(rows).splitlines()
    bars = [[m.start() for m in re.finditer(r"\|", line)] for line in [lines[0], *lines[2:]]]
    assert len(bars[0]) == 10 and all(b == bars[0] for b in bars), "\n".join(lines)
    assert lines[0].split("|")[2].strip() == "kind" and lines[2].split("|")[2].strip() == "first-model"
    assert lines[3].split("|")[6].strip() == "+0.0153" and lines[3].split("|")[9].strip() == "5f0e6a2c"


def test_a_promotion_that_lost_a_race_is_decided_again_not_refused(
    store: tuple[mlflow.MlflowClient, str], tmp_path: Path
) -> None:
    """v2 and v3 both beat v1 and v2's alias move wins: v3's record says refused (champion_unchanged),
    which is no verdict on v3. After a rollback to v1, a retrain on v3's data decides v3 again."""
    client, exp = store
    v1, v2, v3 = _version(client, exp, "D1"), _version(client, exp, "D2"), _version(client, exp, "D3")
    _record(client, v1, None, True)
    _record(client, v2, v1, True)
    decision = decide(Y, ["a"] * 12, Y, PromotionConfig(), champion_version=v1, challenger_version=v3)
    champ.record_decision(MODEL, str(client.get_model_version(MODEL, v3).run_id), decision, {})
    assert champ.move_champion(MODEL, v3, expected=v1) == (False, "2")
    assert client.get_model_version(MODEL, v3).tags["promotion.decision"] == "refused"
    champ.rollback(MODEL, exp, v1, "back to v1", "rita", _lock(tmp_path), floor=0.5)  # type: ignore[arg-type]
    prior = champ.prior_decision(MODEL, "D3", "p", champ.current_champion(MODEL))
    assert prior is not None and (prior.rule, prior.version) == ("undecided", "3"), prior


def test_a_decision_made_again_replaces_the_whole_record(store: tuple[mlflow.MlflowClient, str]) -> None:
    """An earlier review (or supersession) must not stick to the new verdict on the run or the version."""
    client, exp = store
    v1, v2 = _version(client, exp, "D1"), _version(client, exp, "D2")
    _record(client, v1, None, True)
    run_id = str(client.get_model_version(MODEL, v2).run_id)
    first = reviewed(decide(Y, ["a"] * 12, Y, PromotionConfig(), champion_version=v1, challenger_version=v2),
                     None, "", "no approval within 2 s")  # fmt: skip
    champ.record_decision(MODEL, run_id, first, {"promotion.review": "timeout", "promotion.reviewer": ""})
    assert client.get_run(run_id).data.tags["promotion.review"] == "timeout"
    assert champ.archive_decision(MODEL, v2)
    again = decide(Y, ["a"] * 12, Y, PromotionConfig(), champion_version=v1, challenger_version=v2)
    champ.record_decision(MODEL, run_id, again, {})
    run_tags = client.get_run(run_id).data.tags
    assert "promotion.review" not in run_tags and "promotion.reviewer" not in run_tags
    assert run_tags["promotion.decision"] == "promoted"
    assert client.get_model_version(MODEL, v2).tags["promotion.decision"] == "promoted"
