"""``make serve`` / ``make stop``: both UIs and the served deployments on this machine.

Starts, each in its own process group with its log under ``.intent-mlops/logs/``:
a Prefect server (project-local ``PREFECT_HOME``, SQLite), an MLflow tracking server over the
embedded ``mlruns/`` store, and ``intent-mlops serve`` (the deployments of ``prefect.yaml``)
pointed at both. It waits until each answers, writes what it started to a pid file, and prints
the URLs. ``stop`` ends exactly the processes in that file. A taken port or a server that does
not come up stops whatever this call started and exits 1 with the reason and the log's tail.

    python -m flows.stack start [--prefect-port 4200] [--mlflow-port 5000] [--timeout 180]
    python -m flows.stack stop
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from intent_mlops.config.environment import NotAProjectError, apply_defaults, project_root
from intent_mlops.config.params import load_config
from intent_mlops.registry.tracking import connect, tracking_uri

HOST = "127.0.0.1"  # loopback only: nothing here has authentication (team mode: docs/team.md)
PID_FILE = ".intent-mlops/serve.json"
DEPLOYMENTS = (
    "train-intent-classifier/train",
    "retrain-intent-classifier/retrain",
    "batch-predict-intents/batch-predict",
    "monitor-intents/monitor",
)


class StackError(RuntimeError):
    """A server could not start; the message says which and why."""


@dataclass
class Started:
    name: str
    pid: int
    log: str


_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}  # so a child that died is reaped, not a zombie "alive"


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as r:  # noqa: S310 (loopback URL built here)
            return bool(r.status == 200)
    except OSError:
        return False


def _spawn(name: str, cmd: list[str], env: dict[str, str], logs: Path) -> Started:
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{name}.log"
    with open(log, "ab") as fh:
        proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    _CHILDREN[proc.pid] = proc
    return Started(name, proc.pid, str(log))


def _alive(pid: int) -> bool:
    if pid in _CHILDREN:
        return _CHILDREN[pid].poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait(what: str, ready: object, started: Started, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():  # type: ignore[operator]
            return
        if not _alive(started.pid):
            raise StackError(f"{what} exited during start-up; its log: {started.log}\n{_tail(started.log)}")
        time.sleep(1)
    raise StackError(f"{what} did not answer within {timeout:.0f} s; its log: {started.log}\n{_tail(started.log)}")


def _tail(log: str, lines: int = 15) -> str:
    try:
        return "\n".join(Path(log).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _deployments_ready(api: str) -> bool:
    return all(answers(f"{api}/deployments/name/{name}") for name in DEPLOYMENTS)


def _terminate(pids: list[int], grace: float = 15) -> None:
    """SIGTERM each process group, then SIGKILL what is left after ``grace`` seconds."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_group_alive(p) for p in pids):
        time.sleep(0.3)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def start(root: Path, prefect_port: int, mlflow_port: int, timeout: float) -> int:
    apply_defaults(root)
    pid_file = root / PID_FILE
    if pid_file.exists() and any(_group_alive(p["pid"]) for p in json.loads(pid_file.read_text())["processes"]):
        raise StackError(f"already running (see {pid_file}); `make stop` first")
    taken = [str(p) for p in (prefect_port, mlflow_port) if not port_free(p)]
    if taken:
        raise StackError(f"port {', '.join(taken)} on {HOST} is taken; free it or pick another, e.g. "
                         f"make serve PREFECT_PORT={prefect_port + 1} MLFLOW_PORT={mlflow_port + 1}")  # fmt: skip
    bindir, logs = Path(sys.executable).parent, root / ".intent-mlops" / "logs"
    api = f"http://{HOST}:{prefect_port}/api"
    mlflow_url = f"http://{HOST}:{mlflow_port}"
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    started: list[Started] = []
    try:
        # the UI asks the API at PREFECT_UI_API_URL, which defaults to port 4200 whatever --port says
        ui_env = {**env, "PREFECT_UI_API_URL": api, "PREFECT_SERVER_API_HOST": HOST,
                  "PREFECT_SERVER_API_PORT": str(prefect_port)}  # fmt: skip
        prefect = _spawn("prefect-server", [str(bindir / "prefect"), "server", "start", "--host", HOST,
                                            "--port", str(prefect_port)], ui_env, logs)  # fmt: skip
        started.append(prefect)
        uri = tracking_uri_for_server(root)
        # tables and experiment made under the store's set-up lock, before the server opens the file
        connect(load_config(root / "params.yaml").mlflow, root)
        mlflow_env = {**env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        server = [sys.executable, "-m", "flows.mlflow_ui", "server"]  # `mlflow server`, telemetry notice off
        mlflow = _spawn("mlflow-server", [*server, "--backend-store-uri", uri,
                                          "--default-artifact-root", (root / "mlruns" / "artifacts").as_uri(),
                                          "--host", HOST, "--port", str(mlflow_port), "--workers", "1"],
                        mlflow_env, logs)  # fmt: skip
        started.append(mlflow)
        _wait(f"Prefect server on port {prefect_port}", lambda: answers(f"{api}/health"), prefect, timeout)
        _wait(f"MLflow server on port {mlflow_port}", lambda: answers(f"{mlflow_url}/health"), mlflow, timeout)
        served_env = {**env, "PREFECT_API_URL": api, "PREFECT_UI_URL": f"http://{HOST}:{prefect_port}",
                      "MLFLOW_TRACKING_URI": mlflow_url}  # fmt: skip
        served = _spawn(
            "deployments", [str(bindir / "intent-mlops"), "--project", str(root), "serve"], served_env, logs
        )
        started.append(served)
        what = "intent-mlops serve (deployments train, retrain, batch-predict, monitor)"
        _wait(what, lambda: _deployments_ready(api), served, timeout)
    except BaseException:
        _terminate([s.pid for s in started])
        raise
    record = {"root": str(root), "prefect": f"http://{HOST}:{prefect_port}", "mlflow": mlflow_url,
              "processes": [s.__dict__ for s in started]}  # fmt: skip
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(json.dumps(record, indent=2))
    served = "deployments train, retrain, batch-predict, monitor"
    print(f"Prefect UI: http://{HOST}:{prefect_port}   ({served}; logs in {logs})")
    print(f"MLflow UI:  {mlflow_url}   (runs and the intent-classifier registry)")
    print("make stop   ends all three")
    return 0


def tracking_uri_for_server(root: Path) -> str:
    """The embedded store the server fronts (``MLFLOW_TRACKING_URI`` when it is not a server URL)."""

    uri = tracking_uri(load_config(root / "params.yaml").mlflow, root)
    if uri.startswith("http"):
        raise StackError(f"MLflow tracking URI {uri} is already a server: make serve runs the embedded one")
    return uri


def stop(root: Path) -> int:
    pid_file = root / PID_FILE
    if not pid_file.exists():
        print("nothing to stop (no .intent-mlops/serve.json)")
        return 0
    record = json.loads(pid_file.read_text())
    _terminate([p["pid"] for p in reversed(record["processes"])])
    pid_file.unlink()
    print("stopped: " + ", ".join(f"{p['name']} ({p['pid']})" for p in record["processes"]))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m flows.stack", description="Start or stop both UIs and the deployments.")
    p.add_argument("action", choices=("start", "stop"))
    p.add_argument("--project", default=None)
    p.add_argument("--prefect-port", type=int, default=4200)
    p.add_argument("--mlflow-port", type=int, default=5000)
    p.add_argument("--timeout", type=float, default=180, help="seconds to wait for each server")
    args = p.parse_args(argv)
    try:
        root = Path(args.project).resolve() if args.project else project_root()
        if args.action == "start":
            return start(root, args.prefect_port, args.mlflow_port, args.timeout)
        return stop(root)
    except (StackError, NotAProjectError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
