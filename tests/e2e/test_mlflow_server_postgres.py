"""Team scale: the training flow against a real MLflow tracking server backed by PostgreSQL."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}


def _pg_available() -> bool:
    try:
        with socket.create_connection((PG["host"], PG["port"]), timeout=2):
            return True
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    if not _pg_available():
        pytest.skip("PostgreSQL is not listening on 127.0.0.1:5432")
    import psycopg2

    db = f"intent_mlops_e2e_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(dbname="test", **PG)
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {db}")
    port = _free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    cmd = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", f"postgresql+psycopg2://{PG['user']}@{PG['host']}:{PG['port']}/{db}",
        "--artifacts-destination", str(tmp_path / "artifacts"),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    log = open(tmp_path / "mlflow-server.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None, (tmp_path / "mlflow-server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "MLflow server did not start in 180 s"
            time.sleep(1)
        yield url
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
        log.close()
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        admin.close()


def test_flow_registers_on_a_postgres_backed_server(project: Path, mlflow_server: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import mlflow

    from flows.training import train_flow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    out = train_flow(project_dir=str(project))
    client = mlflow.MlflowClient(mlflow_server, mlflow_server)
    mv = client.get_model_version_by_alias("intent-classifier", "champion")
    assert str(mv.version) == out["version"] == "1"
    assert mv.tags["data.md5"] == out["data_md5"]
    assert not (project / "mlruns" / "mlflow.db").exists(), "nothing went to the embedded store"
    model = mlflow.pyfunc.load_model("models:/intent-classifier@champion")
    (pred,) = model.predict(pd.DataFrame({"text": ["where is my order"]}))  # proxied artifacts, pyfunc
    assert pred["model_version"] and {"label", "out_of_scope", "top_k"} <= set(pred)
