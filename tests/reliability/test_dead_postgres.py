"""Issue 15 item 3: PostgreSQL stops under the MLflow server in the middle of a training run.

Team mode's MLflow server keeps runs and the registry in PostgreSQL. Here the database is a cluster
of the test's own (the shared instance must stay up), stopped with ``pg_ctl -m immediate`` while the
model trains, as in a crash of the database host. The MLflow server stays up and answers 500s.
Pass: the command fails within bounded time with one line naming the server (no traceback) after
MLflow's client retried with backoff; the checkpoint stays; after PostgreSQL is back, the same command
resumes from the checkpoint and completes; exactly one model version and no run left RUNNING.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import mlflow
import pytest

from tests.e2e.servers import PrivatePostgres, free_port, kill_group, service, start_detached
from tests.reliability.helpers import assert_failed_in_one_line, checkpoint_written, long_train_cmd

pytestmark = [pytest.mark.reliability, pytest.mark.slow]


@pytest.fixture
def postgres() -> Iterator[PrivatePostgres]:
    why = PrivatePostgres.unavailable()
    if why:
        pytest.skip(why)
    with PrivatePostgres(free_port()) as pg:
        pg.create_database("mlflow")
        yield pg


def test_postgres_stopped_under_the_mlflow_server_mid_training(
    project: Path, tmp_path: Path, postgres: PrivatePostgres, record: Callable[[str, str], None]
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server_cmd = [
        str(Path(sys.executable).parent / "mlflow"), "server",
        "--backend-store-uri", postgres.url("mlflow"),
        "--artifacts-destination", str(tmp_path / "artifacts"),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    server_env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    server = start_detached(server_cmd, server_env, tmp_path / "mlflow-server.log", f"{url}/health", timeout=300)
    try:
        cmd = long_train_cmd(project)
        env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home"), "MLFLOW_TRACKING_URI": url}
        with service("train-first", cmd, env, tmp_path / "logs") as first:
            first.wait_until(checkpoint_written(project), 300, "a checkpoint")
            postgres.stop()
            stopped_at = time.monotonic()
            first.proc.wait(timeout=900)
            failed_after = time.monotonic() - stopped_at
        out = first.tail(10**6)
        assert_failed_in_one_line(first.proc.returncode, out, url, "HTTP 5xx")
        assert checkpoint_written(project)(), "the checkpoint stays for the rerun"
        assert server.poll() is None, "the MLflow server itself stayed up"
        errors = len(re.findall(r'HTTP/1\.1" 5\d\d', (tmp_path / "mlflow-server.log").read_text(errors="replace")))
        assert errors >= 2, f"the client retried a failing request ({errors} answered 5xx)"

        postgres.start()
        second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        assert second.returncode == 0, (second.stdout + second.stderr)[-3000:]
        client = mlflow.MlflowClient(url, url)
        versions = client.search_model_versions("name='intent-classifier'")
        assert [v.version for v in versions] == ["1"], "exactly one version"
        assert versions[0].status == "READY"
        run = client.get_run(versions[0].run_id)
        assert run.info.status == "FINISHED" and run.data.metrics["resumed_from_step"] > 0
        exp = client.get_experiment_by_name("intent-classifier")
        statuses = [r.info.status for r in client.search_runs([exp.experiment_id])]
        assert "RUNNING" not in statuses, f"no run left RUNNING: {statuses}"
    finally:
        kill_group(server)
    record(
        "PostgreSQL stopped under the MLflow server mid-training, restarted, same command again",
        f"{errors} requests answered 5xx (retried with backoff); failed {failed_after:.0f} s after the stop "
        "with one line naming the server; after a restart of PostgreSQL the rerun resumed "
        f"from step {int(run.data.metrics['resumed_from_step'])}, one version, no RUNNING run",
    )
