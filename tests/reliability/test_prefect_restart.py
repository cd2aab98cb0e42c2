"""Issue 15 item 3: the Prefect server restarts while a training flow runs against it.

`intent-mlops train` runs with `PREFECT_API_URL` set to a `prefect server` (its own SQLite home). The
server is killed while the model trains and started again on the same port and database a few seconds
later. Pass: the run ends in a clear final state that the restarted server shows (Completed, or a
failure with a one-line message and a rerun that completes), and exactly one model version exists.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import mlflow
import pytest

from tests.e2e.servers import clean_env, free_port, kill_group, service, start_detached
from tests.reliability.helpers import checkpoint_written, long_train_cmd

pytestmark = [pytest.mark.reliability, pytest.mark.slow]


def _start(home: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = clean_env(PREFECT_HOME=str(home), PREFECT_UI_ENABLED="false")
    cmd = [str(Path(sys.executable).parent / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    return start_detached(cmd, env, log, f"http://127.0.0.1:{port}/api/health")  # type: ignore[no-any-return]


def test_prefect_server_restarted_mid_training(
    project: Path, tmp_path: Path, record: Callable[[str, str], None]
) -> None:
    home, port, log = tmp_path / "prefect-server-home", free_port(), tmp_path / "prefect-server.log"
    server = _start(home, port, log)
    try:
        cmd = long_train_cmd(project)
        env = {**os.environ, "PREFECT_API_URL": f"http://127.0.0.1:{port}/api", "PREFECT_HOME": str(tmp_path / "c")}
        with service("train", cmd, env, tmp_path / "logs") as run:
            run.wait_until(checkpoint_written(project), 300, "a checkpoint")
            kill_group(server)
            time.sleep(5)
            server = _start(home, port, log)
            run.proc.wait(timeout=900)
        out = run.tail(10**6)
        assert run.proc.returncode == 0, out[-4000:]
        assert "Traceback" not in out, out[-4000:]
        with sqlite3.connect(home / "prefect.db") as db:
            states = [r[0] for r in db.execute("select state_type from flow_run where name is not null")]
        assert states == ["COMPLETED"], states
    finally:
        kill_group(server)
    uri = f"sqlite:///{project / 'mlruns' / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri, uri)
    assert [str(v.version) for v in client.search_model_versions("name='intent-classifier'")] == ["1"]
    record(
        "Prefect server killed mid-training and restarted 5 s later",
        "the flow run finished Completed on the restarted server; one model version",
    )
