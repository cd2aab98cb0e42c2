"""Issue 15 item 3: the MLflow tracking server dies in the middle of a training run.

A project whose runs go to an MLflow server (``MLFLOW_TRACKING_URI=http://...``, as in team mode;
here the server fronts the project's SQLite file). The server is killed while the model trains.
Pass: the command fails within bounded time with a short message naming the server (no traceback),
the checkpoint stays; after the server is restarted the same command resumes from the checkpoint
and completes; exactly one model version exists and no run is left RUNNING.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import mlflow
import pytest

from tests.e2e.servers import free_port, kill_group, service, start_detached
from tests.reliability.helpers import assert_failed_in_one_line, checkpoint_written, long_train_cmd

pytestmark = [pytest.mark.reliability, pytest.mark.slow]


def _start_server(project: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    cmd = [
        str(Path(sys.executable).parent / "mlflow"), "server",
        "--backend-store-uri", f"sqlite:///{project / 'mlruns' / 'mlflow.db'}",
        "--artifacts-destination", str(project / "mlruns" / "artifacts"),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    return start_detached(cmd, env, log, f"http://127.0.0.1:{port}/health")  # type: ignore[no-any-return]


@pytest.fixture
def server(project: Path, tmp_path: Path) -> Iterator[dict[str, object]]:
    from intent_mlops.config.params import load_run_config
    from intent_mlops.registry.tracking import connect

    connect(load_run_config(project).mlflow, project)  # the store's tables, made once
    mlflow.set_tracking_uri(None)
    port = free_port()
    state: dict[str, object] = {"port": port, "log": tmp_path / "mlflow-server.log"}
    state["proc"] = _start_server(project, port, tmp_path / "mlflow-server.log")
    try:
        yield state
    finally:
        kill_group(state["proc"])  # type: ignore[arg-type]


def test_mlflow_server_killed_mid_training(
    project: Path, tmp_path: Path, server: dict[str, object], record: Callable[[str, str], None]
) -> None:
    url = f"http://127.0.0.1:{server['port']}"
    cmd = long_train_cmd(project)
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home"), "MLFLOW_TRACKING_URI": url}
    with service("train-first", cmd, env, tmp_path / "logs") as first:
        first.wait_until(checkpoint_written(project), 300, "a checkpoint")
        kill_group(server["proc"])  # type: ignore[arg-type]
        killed_at = time.monotonic()
        first.proc.wait(timeout=900)
        failed_after = time.monotonic() - killed_at
    out = first.tail(10**6)
    assert_failed_in_one_line(first.proc.returncode, out, url)
    assert checkpoint_written(project)(), "the checkpoint stays for the rerun"

    server["proc"] = _start_server(project, int(server["port"]), server["log"])  # type: ignore[arg-type]
    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, (second.stdout + second.stderr)[-3000:]
    client = mlflow.MlflowClient(url, url)
    versions = client.search_model_versions("name='intent-classifier'")
    assert [v.version for v in versions] == ["1"], "exactly one version"
    run = client.get_run(versions[0].run_id)
    assert run.info.status == "FINISHED" and run.data.metrics["resumed_from_step"] > 0
    exp = client.get_experiment_by_name("intent-classifier")
    assert [r.info.status for r in client.search_runs([exp.experiment_id])] == ["FINISHED"], "no run left RUNNING"
    record(
        "MLflow server killed mid-training, restarted, same command again",
        f"failed {failed_after:.0f} s after the kill with one line naming the server; rerun resumed "
        f"from step {int(run.data.metrics['resumed_from_step'])}, one version, no RUNNING run",
    )
