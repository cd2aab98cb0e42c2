"""Deployments are declared once (prefect.yaml) and served locally from the same declarations."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest
import yaml

from flows import stack
from flows.deployments import build, declarations
from flows.parameters import SignificanceTest, as_overrides
from intent_mlops.config.params import load_config
from tests.conftest import REPO


def test_served_deployments_match_prefect_yaml() -> None:
    served = {d.name: d for d in build(REPO)}
    assert set(served) == {e["name"] for e in declarations(REPO)} >= {"train", "retrain", "monitor"}
    retrain = served["retrain"]
    cron = load_config(REPO / "params.yaml").schedule.cron
    assert [s.schedule.cron for s in retrain.schedules] == [cron]
    assert retrain.concurrency_limit == 1
    assert retrain.concurrency_options.collision_strategy.value == "CANCEL_NEW"
    assert served["train"].parameters == {"project_dir": str(REPO)}


def test_batch_predict_runs_one_at_a_time_in_both_setups() -> None:
    """Batch runs queue (none is dropped) instead of running side by side on the same CPUs and outputs;
    `prefect deploy` (prefect.yaml) and `intent-mlops serve` (build) declare the same limit."""
    entry = next(e for e in declarations(REPO) if e["name"] == "batch-predict")
    assert entry["concurrency_limit"] == {"limit": 1, "collision_strategy": "ENQUEUE"}
    served = next(d for d in build(REPO) if d.name == "batch-predict")
    assert served.concurrency_limit == 1 and served.concurrency_options.collision_strategy.value == "ENQUEUE"


def test_prefect_yaml_schedule_equals_params_yaml() -> None:
    """`prefect deploy` reads prefect.yaml, `intent-mlops serve` params.yaml: they must agree."""
    entries = {e["name"]: e for e in yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]}
    cfg = load_config(REPO / "params.yaml")
    assert [s["cron"] for s in entries["retrain"]["schedules"]] == [cfg.schedule.cron]
    assert entries["retrain"]["concurrency_limit"] == {"limit": 1, "collision_strategy": "CANCEL_NEW"}
    assert [s["cron"] for s in entries["monitor"]["schedules"]] == [cfg.monitoring.cron]
    assert entries["monitor"]["concurrency_limit"] == {"limit": 1, "collision_strategy": "CANCEL_NEW"}


def test_monitor_deployment_runs_hourly_from_params(tmp_path: Path) -> None:
    """The served monitor deployment takes monitoring.cron (not the retrain schedule) from params.yaml."""
    served = {d.name: d for d in build(REPO)}
    assert [s.schedule.cron for s in served["monitor"].schedules] == [load_config(REPO / "params.yaml").monitoring.cron]
    assert served["monitor"].concurrency_limit == 1
    assert served["monitor"].parameters == {"project_dir": str(REPO)}
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["monitoring"]["cron"] = "*/15 * * * *"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    served = {d.name: d for d in build(tmp_path)}
    assert [s.schedule.cron for s in served["monitor"].schedules] == ["*/15 * * * *"]
    assert [s.schedule.cron for s in served["retrain"].schedules] == [params["schedule"]["cron"]]


def test_forms_have_descriptions_types_and_choices() -> None:
    """What the Prefect UI renders: the schema Prefect derives from each flow and sends with the deployment."""
    from prefect.utilities.callables import parameter_schema

    from flows.retraining import retrain_flow
    from flows.training import train_flow

    assert all(d.enforce_parameter_schema is not False for d in build(REPO))
    props = parameter_schema(train_flow.fn).model_dump()["properties"]
    assert all(p.get("description") for p in props.values()), props
    epochs = next(x for x in props["epochs"]["anyOf"] if x.get("type") == "integer")
    assert (epochs["minimum"], epochs["maximum"]) == (1, 100)
    schema = parameter_schema(retrain_flow.fn).model_dump()
    assert schema["definitions"]["SignificanceTest"]["enum"] == ["bootstrap", "mcnemar"]


def test_bad_form_values_are_refused_by_the_flow() -> None:
    from prefect.exceptions import ParameterTypeError

    from flows.training import train_flow

    with pytest.raises(ParameterTypeError):
        train_flow.validate_parameters({"epochs": 0})
    with pytest.raises(ParameterTypeError):
        train_flow.validate_parameters({"significance_test": "t-test"})


def test_typed_fields_become_overrides() -> None:
    out = as_overrides(["train.seed=3"], epochs=2, significance_test=SignificanceTest.mcnemar, require_approval=True)
    assert out == ["train.seed=3", "train.epochs=2", "promotion.significance_test=mcnemar",
                   "promotion.require_approval=true"]  # fmt: skip
    cfg = load_config(REPO / "params.yaml", None)
    assert cfg.promotion.significance_test == "bootstrap"


def test_taken_port_is_refused_and_nothing_is_left_running(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:  # type: ignore[type-arg]
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        rc = stack.main(["start", "--project", str(REPO), "--prefect-port", str(port), "--mlflow-port", str(port + 1)])
    assert rc == 1
    err = capsys.readouterr().err
    assert f"port {port}" in err and "taken" in err and sys.executable
    assert not (REPO / stack.PID_FILE).exists() or "processes" in (REPO / stack.PID_FILE).read_text()


def test_a_data_project_without_prefect_yaml_uses_the_code_declarations(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    served = {d.name: d for d in build(tmp_path)}
    assert set(served) >= {"train", "retrain"}
    assert served["train"].parameters == {"project_dir": str(tmp_path)}
