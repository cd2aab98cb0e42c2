"""The champion/challenger flow end to end (issue 12, item 6), under the session's Prefect test server.

Every assertion reads the record (MLflow registry, runs and artifacts; Prefect flow runs, task runs and
artifacts), never the logs. Each test trains as few versions as its claim needs: a flow run costs a
fine-tune of the small random BERT of ``tests/conftest.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml

from flows.retraining import SKIPPED, retrain_flow
from intent_mlops.data.io import read_csv
from intent_mlops.data.lineage import text_hash
from intent_mlops.registry.models import CHALLENGER, CHAMPION, PREVIOUS_CHAMPION
from tests.conftest import FOUR_INTENTS, REPO, git

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]
MODEL = "intent-classifier"
CRITERIA = {"min_delta", "significance", "no_intent_regression", "min_macro_f1"}
# a champion that is easy to beat: one epoch at a tiny learning rate, crowned by a zero floor
WEAK = ["train.epochs=1", "train.learning_rate=1e-05", "promotion.min_macro_f1=0.0"]
APPROVAL = ["promotion.require_approval=true", "promotion.approval_timeout_seconds=900"]
# where only the record matters, not the model: one epoch, and a floor any first version passes
FAST = ["train.epochs=1", "promotion.min_macro_f1=0.0"]


# ------------------------------------------------------------------------------------------- helpers


@pytest.fixture
def proj(project: Path) -> Path:
    """The conftest project with early stopping 3 epochs after the best one (same models, less time)."""
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["train"].update(epochs=8, early_stopping_patience=3)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    git(project, "commit", "-qam", "tests: shorter training")
    return project


def _client(project: Path) -> mlflow.MlflowClient:
    uri = f"sqlite:///{project / 'mlruns' / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return mlflow.MlflowClient(uri, uri)


def _versions(client: mlflow.MlflowClient) -> list[str]:
    if not client.search_registered_models(f"name='{MODEL}'"):
        return []
    return sorted((str(v.version) for v in client.search_model_versions(f"name='{MODEL}'")), key=int)


def _aliases(client: mlflow.MlflowClient) -> dict[str, str]:
    return {k: str(v) for k, v in client.get_registered_model(MODEL).aliases.items()}


def _experiment_id(client: mlflow.MlflowClient) -> str:
    return str(client.get_experiment_by_name(MODEL).experiment_id)


def _training_runs(client: mlflow.MlflowClient) -> list[Any]:
    exp = client.get_experiment_by_name(MODEL)
    runs = client.search_runs([exp.experiment_id]) if exp else []
    return [r for r in runs if r.data.tags.get("intent-mlops.kind") != "decision"]


def _tags(client: mlflow.MlflowClient, version: str) -> dict[str, str]:
    """The version's record: its run's tags (all of them) and the version's (the headline)."""
    mv = client.get_model_version(MODEL, version)
    return {**client.get_run(str(mv.run_id)).data.tags, **mv.tags}


def _report(client: mlflow.MlflowClient, version: str) -> dict[str, Any]:
    run_id = client.get_model_version(MODEL, version).run_id
    return dict(json.loads(mlflow.artifacts.load_text(f"runs:/{run_id}/promotion/decision.json")))


def _predictions(client: mlflow.MlflowClient, version: str) -> pd.DataFrame:
    run_id = client.get_model_version(MODEL, version).run_id
    path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="promotion/dev_predictions.csv")
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _retrain(project: Path, **kwargs: Any) -> Any:
    """The flow's final state (``return_state``), so a skip's message can be read."""
    return retrain_flow(project_dir=str(project), return_state=True, **kwargs)


def _flow_run_id(state: Any) -> UUID:
    return UUID(str(state.state_details.flow_run_id))


def _task_run_names(flow_run_id: UUID | None = None) -> list[str]:
    """Names of the task runs of one flow run (of every flow run on the server when None)."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    flt = None if flow_run_id is None else FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
    names: list[str] = []
    with get_client(sync_client=True) as c:
        while batch := c.read_task_runs(flow_run_filter=flt, limit=200, offset=len(names)):
            names += [t.name for t in batch]
    return names


def _fine_tunes() -> int:
    return sum(1 for name in _task_run_names() if name.startswith("fine-tune"))


def _child_flow_runs(flow_run_id: UUID) -> list[Any]:
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    flt = FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id]))
    with get_client(sync_client=True) as c:
        return list(c.read_flow_runs(flow_run_filter=flt))


def _prefect_artifacts(flow_run_id: UUID | str) -> dict[str, Any]:
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    flt = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(str(flow_run_id))]))
    with get_client(sync_client=True) as c:
        return {a.key: a for a in c.read_artifacts(artifact_filter=flt) if a.key}


def _commit(project: Path, message: str) -> None:
    git(project, "add", "-A")
    git(project, "commit", "-qm", message)


def _served_labels(version: str, texts: list[str]) -> list[str]:
    """What the registered version predicts, through MLflow's own loader (not the project's code)."""
    from intent_mlops.model.labels import OOS_DATA, OOS_PREDICTED

    model = mlflow.pyfunc.load_model(f"models:/{MODEL}/{version}")
    served = model.predict(pd.DataFrame({"text": texts}))
    return [str(r["top_k"][0]["label"]).replace(OOS_PREDICTED, OOS_DATA) for r in served]  # the top intent


def _paused_runs() -> dict[UUID, Any]:
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType

    flt = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED])))
    with get_client(sync_client=True) as c:
        return {r.id: r for r in c.read_flow_runs(flow_run_filter=flt)}


def _wait_for_paused_run(thread: threading.Thread, before: set[UUID], seconds: float = 900) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        paused = [r for i, r in _paused_runs().items() if i not in before]
        if paused:
            assert len(paused) == 1 and paused[0].name, paused
            return paused[0]
        assert thread.is_alive(), "the flow ended without pausing for approval"
        time.sleep(1)
    raise AssertionError(f"no paused flow run within {seconds} s")


def _in_thread(fn: Any) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["state"] = fn()
        except BaseException as exc:  # surfaced by the test's assertion on `out`
            out["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def _approve(project: Path, answer: dict[str, Any], *, force: bool = False) -> tuple[Any, UUID]:
    """Retrain with approval on; answer the paused run's form through the Prefect API."""
    from prefect.flow_runs import resume_flow_run

    before = set(_paused_runs())
    thread, out = _in_thread(lambda: _retrain(project, overrides=APPROVAL, force=force))
    paused = _wait_for_paused_run(thread, before)
    client = _client(project)
    assert CHAMPION in _aliases(client) and _aliases(client)[CHAMPION] != _aliases(client)[CHALLENGER], (
        "nothing promoted before the answer"
    )
    resume_flow_run(paused.id, run_input=answer)
    thread.join(600)
    assert not thread.is_alive() and "error" not in out, out
    return out["state"], paused.id


# ------------------------------------------------------------------------------------------- tests


def test_first_version_is_crowned_by_the_floor_and_unchanged_data_is_skipped(proj: Path) -> None:
    client = _client(proj)
    first = _retrain(proj)
    assert first.is_completed(), first
    out = first.result()
    assert out["version"] == "1" and out["decision"]["decision"] == "promoted"
    tags = _tags(client, "1")
    assert tags["promotion.decision"] == "promoted" and tags["promotion.champion_version"] == "none"
    report = _report(client, "1")
    assert [c["name"] for c in report["criteria"]] == ["min_macro_f1"], "no champion: the floor alone decides"
    floor = report["criteria"][0]
    assert floor["passed"] and floor["value"] >= floor["threshold"] == 0.5
    assert _aliases(client) == {CHAMPION: "1", CHALLENGER: "1"}
    runs_before, fine_tunes_before = len(_training_runs(client)), _fine_tunes()
    assert fine_tunes_before >= 1, "the task-run query sees the first run's fine-tune"

    # same data, same params: finished at once as skipped; nothing trained, registered or tracked.
    # As in a fresh process (the CLI, a worker): MLflow's default store is not the project's.
    mlflow.set_tracking_uri(f"sqlite:///{proj.parent / 'elsewhere.db'}")
    os.environ.pop("MLFLOW_TRACKING_URI", None)  # set_tracking_uri exports it; a user's export would rightly win
    skipped = _retrain(proj)
    assert skipped.is_completed(), skipped
    assert skipped.message == f"{SKIPPED}: champion version 1 was trained on this data and params", skipped.message
    result = skipped.result()
    assert result["skipped"] is True and result["champion"] == "1" and result["data_md5"] == tags["data.md5"]
    run_id = _flow_run_id(skipped)
    names = _task_run_names(run_id)
    assert names and not any(n.startswith("fine-tune") for n in names), names
    assert _child_flow_runs(run_id) == [], "no training subflow"
    assert _fine_tunes() == fine_tunes_before
    assert _versions(client) == ["1"]
    assert len(_training_runs(client)) == runs_before, "no MLflow run for a skip"
    assert "retrain-skipped" in _prefect_artifacts(run_id)
    assert _aliases(client) == {CHAMPION: "1", CHALLENGER: "1"}

    # force trains anyway (the training subflow with its fine-tune) and decides against the champion
    forced = _retrain(proj, force=True)
    assert forced.is_completed() and not str(forced.message).startswith(SKIPPED), forced
    assert forced.result()["version"] == "2"
    children = _child_flow_runs(_flow_run_id(forced))
    assert len(children) == 1 and any(n.startswith("fine-tune") for n in _task_run_names(children[0].id))
    assert _fine_tunes() == fine_tunes_before + 1
    assert _versions(client) == ["1", "2"]
    assert _tags(client, "2")["promotion.champion_version"] == "1"


def test_v2_on_new_data_is_decided_with_every_criterion_recorded(proj: Path) -> None:
    from intent_mlops.data.commands import data_import
    from intent_mlops.demo.corpus import BATCHES, next_batch

    client = _client(proj)
    assert _retrain(proj, overrides=FAST).result()["version"] == "1"
    champion_run = client.get_model_version(MODEL, "1").run_id
    seen = set(mlflow.artifacts.load_text(f"runs:/{champion_run}/lineage/train_text_hashes.txt").split())

    # New data: new phrasings of the four intents plus one intent the champion does not know. The split
    # seed changes too, so rows the champion trained on land in the new dev split (the overlap to exclude).
    new_intent = BATCHES[1].new_intent
    batch = next_batch(1, per_intent=20, typo_rate=0.0)
    batch[batch["label"].isin([*FOUR_INTENTS, new_intent])].to_csv(proj.parent / "batch.csv", index=False)
    data_import(proj, proj.parent / "batch.csv", append=True)
    params = yaml.safe_load((proj / "params.yaml").read_text())
    params["split"]["seed"] = 7
    params["promotion"]["min_support"] = 2  # few compared rows per intent once the overlap is excluded
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _commit(proj, "data v2: batch 1, split seed 7")

    state = _retrain(proj, overrides=FAST)
    assert state.is_completed() and state.result()["version"] == "2", state
    dev = read_csv(proj / "splits" / "dev.csv")
    overlap = sum(text_hash(t) in seen for t in dev["text"])
    assert overlap > 0, "the test needs dev rows the champion trained on"

    # the version's tags
    tags = _tags(client, "2")
    assert tags["promotion.decision"] in ("promoted", "refused")
    assert tags["promotion.reason"].startswith(tags["promotion.decision"])
    assert tags["promotion.champion_version"] == "1" and tags["promotion.challenger_version"] == "2"
    for key in ("promotion.gain", "promotion.ci_low", "promotion.ci_high", "promotion.p_value"):
        float(tags[key])  # a number, not "none": there was a champion to compare with
    assert tags["promotion.test"] == "bootstrap"
    assert tags["promotion.excluded_rows"] == str(overlap)

    # the run's JSON report: every criterion with its numbers, per-intent table, excluded rows, new intent
    report = _report(client, "2")
    assert {c["name"] for c in report["criteria"]} == CRITERIA
    for c in report["criteria"]:
        assert isinstance(c["value"], float) and isinstance(c["threshold"], float) and c["detail"], c
        assert isinstance(c["passed"], bool)
    assert report["decision"] == tags["promotion.decision"]
    assert report["excluded_rows"] == overlap and report["n_examples"] == len(dev) - overlap
    assert report["new_intents"] == [new_intent]
    assert report["compared_rows"] == report["n_examples"] - sum(
        1 for t, y in zip(dev["text"], dev["label"], strict=True) if y == new_intent and text_hash(t) not in seen
    )
    per_intent = {row["intent"]: row for row in report["per_intent"]}
    assert set(per_intent) == {*FOUR_INTENTS, new_intent}
    for intent in FOUR_INTENTS:
        assert isinstance(per_intent[intent]["champion_f1"], float)
        assert isinstance(per_intent[intent]["challenger_f1"], float)
    assert per_intent[new_intent]["champion_f1"] is None, "an intent the champion does not know"
    assert report["record"]["prefect.flow_run_id"]

    # the compared rows are exactly the dev rows the champion did not train on
    preds = _predictions(client, "2")
    kept = {int(line) for line, t in zip(dev.index, dev["text"], strict=True) if text_hash(t) not in seen}
    assert set(preds["line"].astype(int)) == kept

    # markdown report, registry description, Prefect artifact on the flow run that decided
    run_id = client.get_model_version(MODEL, "2").run_id
    markdown = mlflow.artifacts.load_text(f"runs:/{run_id}/promotion/decision.md")
    assert all(name in markdown for name in CRITERIA) and f"{overlap} excluded" in markdown
    card = client.get_model_version(MODEL, "2").description  # the model card, with the decision in it
    verdict, why = tags["promotion.reason"].split(": ", 1)
    assert card and "## Promotion" in card and f"**{verdict}** against champion v1: {why}" in card
    assert all(f"| {name} |" in card for name in CRITERIA) and f"excluded (champion trained on them): {overlap}" in card
    decided_in = UUID(tags["prefect.flow_run_id"])
    assert [c.id for c in _child_flow_runs(_flow_run_id(state))] == [decided_in]
    artifact = _prefect_artifacts(decided_in)["promotion-decision"]
    assert "min_delta" in artifact.data and tags["promotion.decision"] in artifact.description


def test_unreadable_champion_lineage_fails_the_decision_step_and_changes_nothing(
    proj: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read of the champion's train-set hashes that keeps failing never becomes "exclude nothing"."""
    from intent_mlops.registry import champion as champ

    client = _client(proj)
    assert _retrain(proj, overrides=FAST).result()["version"] == "1"
    real = mlflow.artifacts.load_text

    def load_text(uri: str) -> str:
        if uri.endswith(champ.TRAIN_HASHES):
            raise OSError("503 Server Error: Service Unavailable")
        return real(uri)

    monkeypatch.setattr(mlflow.artifacts, "load_text", load_text)
    monkeypatch.setattr(champ, "LINEAGE_RETRY_SECONDS", 0.0)
    state = _retrain(proj, overrides=FAST, force=True)
    assert state.is_failed(), state
    assert "cannot read lineage/train_text_hashes.txt" in str(state.message), state.message  # one line, why
    assert _versions(client) == ["1", "2"] and _aliases(client) == {CHAMPION: "1", CHALLENGER: "2"}
    assert "promotion.decision" not in _tags(client, "2"), "nothing recorded"


def test_worse_challenger_is_refused_and_comparison_uses_the_champions_weights(proj: Path) -> None:
    from intent_mlops.data.commands import data_import

    client = _client(proj)
    assert _retrain(proj).result()["version"] == "1"
    dev_before = read_csv(proj / "splits" / "dev.csv")

    # A worse challenger: the labels of the rows in the train split are shuffled. Splits depend on the
    # text only, so dev and test keep their true labels and both models are scored on the truth.
    data = read_csv(proj / "data" / "intents.csv")
    in_train = data["text"].isin(set(read_csv(proj / "splits" / "train.csv")["text"]))
    shuffled = data["label"].to_numpy().copy()
    shuffled[in_train.to_numpy()] = np.random.default_rng(0).permutation(shuffled[in_train.to_numpy()])
    data.assign(label=shuffled).to_csv(proj.parent / "shuffled.csv", index=False)
    data_import(proj, proj.parent / "shuffled.csv")
    _commit(proj, "data v2: shuffled train labels")

    state = _retrain(proj)
    assert state.is_completed() and state.result()["version"] == "2", state
    dev = read_csv(proj / "splits" / "dev.csv")
    pd.testing.assert_frame_equal(dev, dev_before)

    assert _aliases(client) == {CHAMPION: "1", CHALLENGER: "2"}, "champion unchanged, no previous-champion"
    tags = _tags(client, "2")
    assert tags["promotion.decision"] == "refused" and tags["promotion.champion_version"] == "1"
    report = _report(client, "2")
    failed = {c["name"] for c in report["criteria"] if not c["passed"]}
    assert {"min_delta", "significance", "min_macro_f1"} <= failed, report["criteria"]
    assert all(name in tags["promotion.reason"] for name in failed), tags["promotion.reason"]

    # The champion's column really is the champion's model (not the challenger scored twice).
    preds = _predictions(client, "2")
    assert list(preds.columns) == ["line", "label", "challenger", "champion"]
    assert (preds["champion"] != preds["challenger"]).mean() > 0.25, "the two models differ"
    texts = dev.loc[preds["line"].astype(int), "text"].tolist()
    assert preds["champion"].tolist() == _served_labels("1", texts)
    assert preds["challenger"].tolist() == _served_labels("2", texts)
    assert (preds["champion"] == preds["label"]).mean() >= 0.9, "the champion learned the true labels"

    # The same data and params were refused against this champion: the next retrain skips.
    fine_tunes = _fine_tunes()
    again = _retrain(proj)
    assert again.is_completed(), again
    assert str(again.message).startswith(
        f"{SKIPPED}: version 2, trained on this data and params, was refused on min_delta, significance"
    ) and str(again.message).endswith("against champion version 1"), again.message
    assert again.result()["decided"] == "2"
    assert _fine_tunes() == fine_tunes and _versions(client) == ["1", "2"]


def test_approval_rollback_and_history(proj: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from flows.promotion import announce_rollback
    from intent_mlops.registry.champion import history
    from intent_mlops.registry.history import print_history, rollback_command

    client = _client(proj)
    assert _retrain(proj, overrides=WEAK).result()["decision"]["decision"] == "promoted"

    # v2 passes the policy against the weak champion, pauses; the reviewer refuses it
    comment = "not during the holiday sale"
    state, paused = _approve(proj, {"approve": False, "reviewer": "rita", "comment": comment})
    assert state.is_completed() and state.result()["version"] == "2", state
    assert _aliases(client)[CHAMPION] == "1", "a refusal leaves the champion"
    tags = _tags(client, "2")
    assert tags["promotion.decision"] == "refused"
    assert tags["promotion.reviewer"] == "rita" and tags["promotion.review_comment"] == comment
    assert tags["promotion.review"] == "refused"
    assert "rita" in tags["promotion.reason"] and comment in tags["promotion.reason"]
    review = {c["name"]: c for c in _report(client, "2")["criteria"]}["human_approval"]
    assert not review["passed"] and "rita" in review["detail"] and comment in review["detail"]
    assert {c["name"]: c["passed"] for c in _report(client, "2")["criteria"] if c["name"] in CRITERIA} == dict.fromkeys(
        CRITERIA, True
    ), "the policy itself passed"
    assert tags["prefect.flow_run_id"] == str(paused), "recorded by the run that paused"

    # the same challenger again, approved this time
    skipped = _retrain(proj, overrides=APPROVAL)
    assert str(skipped.message).startswith(f"{SKIPPED}: version 2, trained on this data and params, was refused on "), (
        "refused on this data: skipped without force"
    )
    assert "human_approval" in str(skipped.message), skipped.message
    state, _ = _approve(proj, {"approve": True, "reviewer": "alice", "comment": "ship it"}, force=True)
    assert state.result()["version"] == "3"
    assert _aliases(client) == {CHAMPION: "3", CHALLENGER: "3", PREVIOUS_CHAMPION: "1"}
    tags = _tags(client, "3")
    assert tags["promotion.decision"] == "promoted" and tags["promotion.reviewer"] == "alice"
    assert tags["promotion.review_comment"] == "ship it" and "alice" in tags["promotion.reason"]

    # rollback: back to previous-champion, recorded as a decision, announced as a Prefect event
    announced: list[bool] = []
    # force: v1, the weak champion, may be below the 0.5 floor of params.yaml (it was crowned with floor 0)
    assert (
        rollback_command(proj, None, "bad model", lambda n, t: announced.append(announce_rollback(n, t)), force=True)
        == 0
    )
    assert announced == [True]
    assert _aliases(client) == {CHAMPION: "1", CHALLENGER: "3", PREVIOUS_CHAMPION: "3"}
    rows = history(_experiment_id(client))
    got = [(r["promotion.decision"], r["promotion.champion_version"], r["promotion.challenger_version"]) for r in rows]
    assert got == [("promoted", "none", "1"), ("refused", "1", "2"), ("promoted", "1", "3"), ("rollback", "3", "1")]
    times = [r["promotion.time"] for r in rows]
    assert times == sorted(times) and len(set(times)) == 4
    rollback = rows[-1]
    assert rollback["promotion.reason"] == "bad model" and rollback["promotion.by"]
    assert rollback["data.md5"] == _tags(client, "1")["data.md5"]
    assert all(r["data.md5"] for r in rows)

    capsys.readouterr()
    assert print_history(proj) == 0
    printed = capsys.readouterr().out.splitlines()
    assert [line.split(" | ")[1].strip() for line in printed[2:]] == ["promoted", "refused", "promoted", "rollback"]


def test_racing_promotions_end_with_one_champion_and_a_consistent_history(tmp_path: Path) -> None:
    """Two processes move ``champion`` at once, both against champion v1: exactly one wins."""
    from intent_mlops.config.params import load_config
    from intent_mlops.registry import champion as champ
    from intent_mlops.registry.promotion import decide

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = mlflow.MlflowClient(uri, uri)
    exp = client.create_experiment(MODEL, artifact_location=(tmp_path / "artifacts").as_uri())
    client.create_registered_model(MODEL)
    policy = load_config(REPO / "params.yaml").promotion
    y = ["a"] * 6 + ["b"] * 6
    for version in ("1", "2", "3"):
        run = client.create_run(exp, tags={"data.md5": f"data-{version}"})
        client.log_text(run.info.run_id, "weights", "model/MLmodel")
        client.create_model_version(MODEL, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
        champion_version = None if version == "1" else "1"
        decision = decide(
            y, None if champion_version is None else ["a"] * 12, y, policy,
            champion_version=champion_version, challenger_version=version,
        )  # fmt: skip
        assert decision.promoted
        champ.record_decision(MODEL, run.info.run_id, decision, {"data.md5": f"data-{version}"})
    client.set_registered_model_alias(MODEL, CHAMPION, "1")

    lock, go = tmp_path / "promotion.lock", tmp_path / "go"
    script = (
        "import json, sys, time\n"
        "from pathlib import Path\n"
        "import mlflow\n"
        "from intent_mlops.registry.champion import move_champion, promotion_lock\n"
        f"mlflow.set_tracking_uri({uri!r}); mlflow.set_registry_uri({uri!r})\n"
        "Path(sys.argv[2]).touch()\n"
        f"while not Path({str(go)!r}).exists(): time.sleep(0.005)\n"
        f"with promotion_lock(Path({str(lock)!r})):\n"
        f"    moved, now = move_champion({MODEL!r}, sys.argv[1], '1')\n"
        "print(json.dumps({'version': sys.argv[1], 'moved': moved, 'now': now}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, v, str(tmp_path / f"ready-{v}")],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for v in ("2", "3")
    ]  # fmt: skip
    deadline = time.monotonic() + 300
    while not all((tmp_path / f"ready-{v}").exists() for v in ("2", "3")):
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    go.touch()
    results = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=300)
        assert p.returncode == 0, stderr[-3000:]
        results.append(json.loads(stdout.strip().splitlines()[-1]))

    winners = [r["version"] for r in results if r["moved"]]
    assert len(winners) == 1, results
    winner, loser = winners[0], ({"2", "3"} - set(winners)).pop()
    assert all(r["now"] == winner for r in results), results
    aliases = {k: str(v) for k, v in client.get_registered_model(MODEL).aliases.items()}
    assert aliases == {CHAMPION: winner, PREVIOUS_CHAMPION: "1"}

    # the record agrees with the aliases: the loser's "promoted" became "refused", naming the winner
    loser_tags = _tags(client, loser)
    assert loser_tags["promotion.decision"] == "refused" and loser_tags["promotion.superseded_by"] == winner
    loser_run = client.get_model_version(MODEL, loser).run_id
    report = json.loads(mlflow.artifacts.load_text(f"runs:/{loser_run}/promotion/decision.json"))
    assert report["decision"] == "refused" and report["criteria"][-1]["name"] == "champion_unchanged"
    assert champ.recorded_decision(MODEL, loser)["decision"] == "refused", "a rerun applies the refusal"
    rows = champ.history(exp)
    assert sorted(r["promotion.challenger_version"] for r in rows if r["promotion.decision"] == "promoted") == [
        "1",
        winner,
    ]
    assert {r["promotion.champion_version"] for r in rows if r["promotion.challenger_version"] != "1"} == {"1"}


def test_approval_timeout_leaves_the_version_undecided_and_the_run_finishes() -> None:
    """No answer: the pause times out, "undecided" (not a refusal) is recorded by later tasks, the run completes."""
    from prefect import flow, task

    from flows.promotion import await_approval
    from intent_mlops.config.params import load_config
    from intent_mlops.registry.promotion import decide

    @task
    def after_the_pause() -> str:
        return "ran"

    @flow
    def approval_probe() -> tuple[str, str, dict[str, str], str]:
        y = ["a"] * 5 + ["b"] * 5
        policy = load_config(REPO / "params.yaml").promotion
        decision = decide(y, None, y, policy, champion_version=None, challenger_version="9")
        reviewed, review = await_approval(decision, 2)
        return reviewed.decision, reviewed.reason, review, after_the_pause()

    state = approval_probe(return_state=True)
    assert state.is_completed(), state
    decision, reason, review, after = state.result()
    assert (decision, review["promotion.review"], after) == ("undecided", "timeout", "ran")
    assert "no approval within 2 s" in reason


@pytest.mark.parametrize("failpoint", ["after-register", "after-record", "after-promote"])
def test_sigkill_between_register_and_promote_recovers_on_rerun(proj: Path, failpoint: str) -> None:
    from prefect.settings import PREFECT_API_URL

    cmd = [sys.executable, "-m", "flows.cli", "--project", str(proj), "train"]
    cmd += [arg for override in FAST for arg in ("--set", override)]
    # the session's Prefect test server (no ephemeral server per process); the promotion lock then
    # also takes the Prefect global concurrency limit, as with a real server
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    env.pop("MLFLOW_TRACKING_URI", None)
    crashed = subprocess.run(
        cmd, env={**env, "INTENT_MLOPS_FAILPOINTS": failpoint}, cwd=REPO, capture_output=True, text=True, timeout=900
    )
    assert crashed.returncode == -9, crashed.stdout[-3000:] + crashed.stderr[-3000:]
    client = _client(proj)
    assert _versions(client) == ["1"]
    if failpoint == "after-promote":
        assert _aliases(client)[CHAMPION] == "1", "killed right after the alias move"
    else:
        assert CHAMPION not in _aliases(client), "killed before the alias move"
    before = _tags(client, "1")
    if failpoint == "after-register":
        assert "promotion.decision" not in before
    else:
        assert before["promotion.decision"] == "promoted", "recorded before the kill"
        report_before = _report(client, "1")
        before_flow_run = before["prefect.flow_run_id"]

    rerun = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert _versions(client) == ["1"], "registered once"
    assert _aliases(client)[CHAMPION] == "1"
    runs = _training_runs(client)
    assert len(runs) == 1, "the rerun continued the killed run"
    run = client.get_run(runs[0].info.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["intent-mlops.stage"] == "complete"
    after = _tags(client, "1")
    assert after["promotion.decision"] == "promoted"
    if failpoint in ("after-record", "after-promote"):  # applied, not decided again
        for key in ("promotion.time", "promotion.reason"):
            assert after[key] == before[key], key
        # the run's prefect.flow_run_id names the latest flow run that worked on it (the rerun); the flow
        # run that decided stays in the report's record, compared whole here
        assert _report(client, "1") == report_before
        assert report_before["record"]["prefect.flow_run_id"] == before_flow_run


# ------------------------------------------------------------------ the decision history decides a retrain


def test_a_rollback_holds_against_the_next_retrain_until_force(proj: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """v2 promoted, rolled back to v1: a retrain on v2's data and params skips with who/when/why."""
    from prefect import get_client
    from prefect.settings import PREFECT_API_URL

    from intent_mlops.registry.history import rollback_command
    from tasks.promotion import PROMOTION_LIMIT, promotion_lock

    client = _client(proj)
    assert _retrain(proj, overrides=WEAK).result()["decision"]["decision"] == "promoted"
    assert _retrain(proj).result()["decision"]["decision"] == "promoted", "the default recipe beats the weak v1"
    assert _aliases(client)[CHAMPION] == "2"
    # as the CLI does: the promotion's locks, with a server also its global concurrency limit (released after).
    # force: v1, the weak champion, may be below the 0.5 floor of params.yaml (it was crowned with floor 0)
    monkeypatch.setenv("PREFECT_API_URL", str(PREFECT_API_URL.value()))
    assert rollback_command(proj, None, "refund answers regressed", force=True, lock=promotion_lock(proj)) == 0
    with get_client(sync_client=True) as prefect:
        assert prefect.read_global_concurrency_limit_by_name(PROMOTION_LIMIT).active_slots == 0
    assert _aliases(client)[CHAMPION] == "1"

    fine_tunes = _fine_tunes()
    skipped = _retrain(proj)  # the 03:00 run: same data, same params as v2
    assert skipped.is_completed(), skipped
    message = str(skipped.message)
    assert message.startswith(f"{SKIPPED}: version 2, trained on this data and params, was rolled back by "), message
    assert message.endswith(": refund answers regressed") and " at 20" in message, message
    assert skipped.result()["rule"] == "rolled-back"
    assert _fine_tunes() == fine_tunes and _versions(client) == ["1", "2"] and _aliases(client)[CHAMPION] == "1"

    # `intent-mlops decide --version 2` does not undo a person's rollback either
    from flows.cli import UserError
    from flows.promotion import decide_flow

    with pytest.raises(UserError, match="version 2 was rolled back from by .*: refund answers regressed; `"):
        decide_flow(version="2", project_dir=str(proj))
    assert _aliases(client)[CHAMPION] == "1" and _tags(client, "2")["promotion.decision"] == "promoted"

    forced = _retrain(proj, force=True)
    assert forced.result()["version"] == "3" and _fine_tunes() == fine_tunes + 1
    assert _tags(client, "3")["promotion.champion_version"] == "1", "decided against the champion after the rollback"


def test_an_approval_timeout_is_decided_again_without_a_new_version(proj: Path) -> None:
    from intent_mlops.registry.champion import history

    client = _client(proj)
    assert _retrain(proj, overrides=WEAK).result()["decision"]["decision"] == "promoted"
    timeout = ["promotion.require_approval=true", "promotion.approval_timeout_seconds=2"]
    first = _retrain(proj, overrides=timeout)
    assert first.result()["version"] == "2" and first.result()["decision"]["decision"] == "undecided", first
    assert _tags(client, "2")["promotion.decision"] == "undecided" and _aliases(client)[CHAMPION] == "1"

    fine_tunes = _fine_tunes()
    again = _retrain(proj, overrides=timeout)  # nobody answered again: still undecided, nothing trained
    assert again.is_completed() and again.result()["decided_again"] is True, again
    assert again.result()["decision"]["decision"] == "undecided"
    approved = _retrain(proj, overrides=["promotion.require_approval=false"])  # the policy alone decides now
    assert approved.result()["decided_again"] is True and approved.result()["decision"]["decision"] == "promoted"
    assert _fine_tunes() == fine_tunes and _versions(client) == ["1", "2"], "no retraining, no new version"
    assert _aliases(client)[CHAMPION] == "2"
    rows = [(r["promotion.decision"], r["promotion.challenger_version"]) for r in history(_experiment_id(client))]
    assert rows == [("promoted", "1"), ("undecided", "2"), ("undecided", "2"), ("promoted", "2")]


def test_a_first_model_below_the_floor_registers_once_and_decide_crowns_it(proj: Path) -> None:
    from intent_mlops.registry.champion import history

    client = _client(proj)
    strict = [*WEAK[:2], "promotion.min_macro_f1=0.99"]  # a weak first model under a floor it cannot reach
    first = _retrain(proj, overrides=strict)
    assert first.result()["decision"]["decision"] == "refused" and CHAMPION not in _aliases(client)
    fine_tunes = _fine_tunes()
    again = _retrain(proj, overrides=strict)  # the nightly schedule: no champion, same data and params
    assert again.message == (
        f"{SKIPPED}: version 1, trained on this data and params, was refused on min_macro_f1 "
        "against the floor (no champion yet)"
    ), again.message
    assert _fine_tunes() == fine_tunes and _versions(client) == ["1"]

    # the user relaxes the floor: `intent-mlops decide --version 1` decides it again, without training
    from prefect.settings import PREFECT_API_URL

    cmd = [sys.executable, "-m", "flows.cli", "--project", str(proj), "decide", "--version", "1"]
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run(
        [*cmd, "--set", "promotion.min_macro_f1=0.0"], env=env, cwd=REPO, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "decided version 1 again: promoted" in done.stdout, done.stdout
    assert _aliases(client)[CHAMPION] == "1"
    assert _fine_tunes() == fine_tunes and _versions(client) == ["1"]
    assert [r["promotion.decision"] for r in history(_experiment_id(client))] == ["refused", "promoted"]
    assert "promoted" in (client.get_model_version(MODEL, "1").description or ""), "the card shows the new decision"
    assert str(_retrain(proj, overrides=strict).message).startswith(f"{SKIPPED}: champion version 1")
