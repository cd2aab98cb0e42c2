"""The MLflow UI that `make serve` starts: its telemetry notice stays off when telemetry is off."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow

from flows.mlflow_ui import SCRIPT, UI_STORAGE, TelemetryNoticeOff
from tests.conftest import REPO

UI_JS = Path(mlflow.__file__).parent / "server" / "js" / "build" / "static" / "js"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.status, r.read().decode()


def test_the_ui_reads_the_keys_the_page_sets() -> None:
    """The installed UI decides on the notice by these localStorage keys (``<key>_v<version>``, JSON)."""
    bundle = "".join(p.read_text(errors="replace") for p in UI_JS.glob("main.*.js"))
    assert '"mlflow.telemetry.info.alert.dismissed"' in bundle and '"mlflow.settings.telemetry.enabled"' in bundle
    assert "=(e,t)=>`${e}_v${t}`" in bundle, "the versioned key scheme of the UI's useLocalStorage"
    notice = "".join(p.read_text(errors="replace") for p in UI_JS.glob("*.js") if "telemetry-alert" in p.read_text())
    assert "Information about UI telemetry" in notice and "initialValue:!1" in notice
    assert set(UI_STORAGE) == {"mlflow.telemetry.info.alert.dismissed_v1", "mlflow.settings.telemetry.enabled_v1"}


def test_make_serve_mlflow_ui_page_turns_the_notice_off_when_telemetry_is_off(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    store, artifacts = f"sqlite:///{tmp_path / 'm.db'}", (tmp_path / "artifacts").as_uri()
    server_args = ["--backend-store-uri", store, "--default-artifact-root", artifacts, "--host", "127.0.0.1",
                   "--port", str(port), "--workers", "1"]  # fmt: skip
    cmd = [sys.executable, "-m", "flows.mlflow_ui", "server", *server_args]  # as flows/stack.py starts it
    server = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if _get(f"http://127.0.0.1:{port}/health")[0] == 200:
                    break
            except OSError:
                assert server.poll() is None, server.stdout.read().decode() if server.stdout else ""
                assert time.monotonic() < deadline, "the MLflow server did not start"
                time.sleep(1)
        status, page = _get(f"http://127.0.0.1:{port}/")
        assert status == 200 and page.startswith("<!doctype html>")
        assert page.index(SCRIPT.decode()) < page.index("<script defer"), "set before the UI's own script runs"
        status, body = _get(f"http://127.0.0.1:{port}/ajax-api/2.0/mlflow/experiments/search?max_results=5")
        assert status == 200 and '"Default"' in body, "the API passes through"
        assert '"disable_ui_telemetry":true' in _get(f"http://127.0.0.1:{port}/ajax-api/3.0/mlflow/ui-telemetry")[1]
    finally:
        os.killpg(server.pid, 15)
        server.wait(60)


def test_with_telemetry_on_the_page_is_mlflows_own() -> None:
    from fastapi.testclient import TestClient
    from mlflow.server.fastapi_app import app

    local = "http://127.0.0.1"  # MLflow's security middleware answers other hosts 403
    on = TestClient(TelemetryNoticeOff(app, disabled=False), base_url=local).get("/")
    assert on.status_code == 200 and b"<head>" in on.content and SCRIPT not in on.content
    off = TestClient(TelemetryNoticeOff(app, disabled=True), base_url=local).get("/")
    assert off.status_code == 200 and SCRIPT in off.content
    assert int(off.headers["content-length"]) == len(off.content)
