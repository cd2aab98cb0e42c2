"""Issue 11 item 4: Ctrl-C / SIGTERM to the CLI's process group during training.

Each stops the run within seconds, leaves a resumable checkpoint and an MLflow run marked KILLED with the
reason, says how to resume, exits 130 / 143, and leaves no process behind (the temporary Prefect server
included). The second signal hits the rerun, which resumed the same MLflow run from the checkpoint.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import psutil
import pytest
import torch

pytestmark = pytest.mark.slow


def _checkpoints(project: Path) -> dict[Path, float]:
    return {p: p.stat().st_mtime for p in (project / ".intent-mlops" / "runs").glob("*/checkpoint/trainer_state.pt")}


def _ours(home: Path) -> list[psutil.Process]:
    """Every process the CLI started, whatever its session: they all inherit PREFECT_HOME."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.pid != os.getpid() and proc.environ().get("PREFECT_HOME") == str(home):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def test_ctrl_c_and_sigterm_stop_cleanly_and_resume(project: Path, tmp_path: Path) -> None:
    home = tmp_path / "prefect-home"
    cmd = [
        sys.executable, "-m", "flows.cli", "--project", str(project), "train",
        "--set", "train.epochs=20", "--set", "train.early_stopping_patience=20",
        "--set", "train.checkpoint_every_steps=3",
    ]  # fmt: skip
    env = {**os.environ, "PREFECT_HOME": str(home)}
    uri = f"sqlite:///{project / 'mlruns' / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri, uri)
    steps = []
    for signum, code, name in ((signal.SIGINT, 130, "SIGINT"), (signal.SIGTERM, 143, "SIGTERM")):
        log_path = tmp_path / f"{name}.log"
        before = _checkpoints(project)
        with open(log_path, "w") as log:
            proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            deadline = time.monotonic() + 300
            while not any(before.get(p) != m for p, m in _checkpoints(project).items()):
                assert proc.poll() is None, log_path.read_text()[-3000:]
                assert time.monotonic() < deadline, "no new checkpoint within 300 s"
                time.sleep(0.05)
            assert _ours(home), "the CLI and its Prefect server run"
            os.killpg(proc.pid, signum)
            t0 = time.monotonic()
            try:
                assert proc.wait(timeout=30) == code, log_path.read_text()[-3000:]
            finally:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
            assert time.monotonic() - t0 < 60
        out = log_path.read_text()
        assert "Traceback" not in out and "Crash detected" not in out, out[-3000:]

        (state_file,) = _checkpoints(project)
        step = torch.load(state_file, weights_only=True)["state"]["global_step"]
        assert step > 0
        assert f"rerun the same command, it resumes from step {step}" in out, out[-2000:]
        exp = client.get_experiment_by_name("intent-classifier")
        (run,) = client.search_runs([exp.experiment_id])  # the rerun resumed the same run
        assert run.info.status == "KILLED"
        reason = run.data.tags["intent-mlops.stop_reason"]
        assert name in reason and f"at step {step}" in reason
        assert re.search(rf"stopped by .*{name}.*: MLflow run {run.info.run_id} marked KILLED", out)

        deadline = time.monotonic() + 10  # the server got SIGTERM from the CLI's exit; let it finish
        while _ours(home) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _ours(home), [p.cmdline() for p in _ours(home)]
        steps.append(step)

    assert steps[1] > steps[0], "the rerun resumed from the checkpoint and went on"
    with sqlite3.connect(home / "prefect.db") as db:
        states = [row[0] for row in db.execute("select state_type from flow_run")]
    assert states == ["CRASHED", "CRASHED"], "Prefect knows both runs ended, none is left Running"
    assert not client.search_registered_models("name='intent-classifier'"), "nothing registered"
