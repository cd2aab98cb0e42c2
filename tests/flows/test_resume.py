"""SIGKILL in the middle of training, rerun the same command: it resumes and registers once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest

pytestmark = pytest.mark.slow


def test_killed_training_resumes_and_registers_once(project: Path, tmp_path: Path) -> None:
    cmd = [
        sys.executable, "-m", "flows.cli", "--project", str(project), "train",
        "--set", "train.epochs=20", "--set", "train.early_stopping_patience=20",
        "--set", "train.checkpoint_every_steps=3",
    ]  # fmt: skip
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home")}
    log = open(tmp_path / "first.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    runs = project / ".intent-mlops" / "runs"
    deadline = time.monotonic() + 300
    while not list(runs.glob("*/checkpoint/trainer_state.pt")):
        assert proc.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint within 300 s"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    log.close()

    uri = f"sqlite:///{project / 'mlruns' / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri, uri)
    assert not client.search_registered_models("name='intent-classifier'"), "nothing registered by the killed run"

    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    versions = client.search_model_versions("name='intent-classifier'")
    assert len(versions) == 1
    run = client.get_run(versions[0].run_id)
    assert run.data.metrics["resumed_from_step"] > 0
    exp = client.get_experiment_by_name("intent-classifier")
    assert len(client.search_runs([exp.experiment_id])) == 1, "the rerun continued the killed run"
