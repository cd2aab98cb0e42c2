"""Issue 15 item 3: the Prefect server restarts while a worker runs a deployment.

A Prefect server (its own SQLite home), a ``process`` work pool, the checkout's ``prefect.yaml``
deployed, and ``prefect worker start``. The ``train`` deployment is triggered through the API; while
the worker's flow run trains, the server is SIGKILLed and started again on the same port and
database 5 s later. Pass: the run ends in a clear final state on the restarted server (Completed;
or Failed/Crashed with a message, and a retry of the deployment completes); the worker is still
serving; exactly one model version exists.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow
import pytest

from tests.e2e.servers import checkout_with_code, clean_env, free_port, kill_group, run, service, start_detached
from tests.reliability.helpers import LONG_TRAINING, checkpoint_written

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

BIN = Path(sys.executable).parent
POOL = "intent-mlops"
TRAIN = "train-intent-classifier/train"


async def _trigger(parameters: dict[str, Any]) -> Any:
    from prefect.deployments import arun_deployment

    return await arun_deployment(TRAIN, parameters=parameters, timeout=0, as_subflow=False)


async def _final(flow_run_id: Any, alive: Callable[[], bool], timeout: float = 900) -> Any:
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    async with get_client() as client:
        while True:
            flow_run = await client.read_flow_run(flow_run_id)
            if flow_run.state is not None and flow_run.state.is_final():
                return flow_run
            assert alive(), "the worker exited"
            assert time.monotonic() < deadline, f"flow run still {flow_run.state_name} after {timeout:.0f} s"
            await asyncio.sleep(2)


def test_prefect_server_restarted_while_a_worker_runs_a_deployment(
    project: Path, tmp_path: Path, record: Callable[[str, str], None]
) -> None:
    checkout = checkout_with_code(project)
    home, port, logs = tmp_path / "prefect-server-home", free_port(), tmp_path / "logs"
    logs.mkdir()
    api = f"http://127.0.0.1:{port}/api"
    server_cmd = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    server_env = clean_env(PREFECT_HOME=str(home), PREFECT_UI_ENABLED="false")
    server = start_detached(server_cmd, server_env, logs / "prefect-server.log", f"{api}/health")
    try:
        client_env = clean_env(PREFECT_API_URL=api, PREFECT_HOME=str(tmp_path / "client-home"))
        run([str(BIN / "prefect"), "work-pool", "create", POOL, "--type", "process"], client_env)
        run([str(BIN / "prefect"), "--no-prompt", "deploy", "--all", "--prefect-file", "prefect.yaml"],
            client_env, cwd=checkout, timeout=420)  # fmt: skip
        worker_env = clean_env(
            PREFECT_API_URL=api, PREFECT_HOME=str(tmp_path / "worker-home"), INTENT_MLOPS_PROJECT=str(checkout),
            PREFECT_WORKER_QUERY_SECONDS="3",
        )  # fmt: skip
        worker_cmd = [str(BIN / "prefect"), "worker", "start", "--pool", POOL, "--name", "restart-worker"]
        with service("worker", worker_cmd, worker_env, logs) as worker:
            from prefect.settings import PREFECT_API_URL, temporary_settings

            with temporary_settings({PREFECT_API_URL: api}):
                flow_run = asyncio.run(_trigger({"overrides": LONG_TRAINING}))
            worker.wait_until(checkpoint_written(checkout), 600, "a checkpoint")
            kill_group(server)
            killed_at = time.monotonic()
            time.sleep(5)
            server = start_detached(server_cmd, server_env, logs / "prefect-server.log", f"{api}/health")
            restarted_at = time.monotonic()
            with temporary_settings({PREFECT_API_URL: api}):
                first = asyncio.run(_final(flow_run.id, worker.alive))
                outcome = first.state
                retried = None
                if not outcome.is_completed():
                    assert outcome.message, f"a failed run says why: {outcome}"
                    retried = asyncio.run(_final(asyncio.run(_trigger({"overrides": LONG_TRAINING})).id, worker.alive))
                    assert retried.state.is_completed(), f"{retried.state}\nworker log:\n{worker.tail()}"
            took = time.monotonic() - restarted_at
            assert worker.alive(), f"the worker keeps serving after the restart:\n{worker.tail()}"
    finally:
        kill_group(server)
    uri = f"sqlite:///{checkout / 'mlruns' / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri, uri)
    assert [str(v.version) for v in client.search_model_versions("name='intent-classifier'")] == ["1"]
    exp = client.get_experiment_by_name("intent-classifier")
    statuses = [r.info.status for r in client.search_runs([exp.experiment_id])]
    assert "RUNNING" not in statuses, statuses
    record(
        "Prefect server killed and restarted while a worker runs the train deployment",
        f"the run ended {outcome.type.value}"
        + (f" ({outcome.message}); a retry completed" if retried else "")
        + f" {took:.0f} s after the restart (server down {restarted_at - killed_at:.0f} s); the worker kept "
        "serving; one model version",
    )
