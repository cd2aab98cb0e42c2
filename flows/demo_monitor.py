"""``make demo-monitor``: watch the champion notice drift, end to end, on this machine.

1. the stack of ``make serve`` (Prefect UI + API, MLflow UI): used when it runs, started when it
   does not (and left running, so the printed links open; ``make stop`` ends it);
2. a champion (``intent-mlops retrain`` trains the first one when there is none);
3. ``intent-mlops serve-model`` in the background, logging every answer to the prediction log;
4. normal traffic (``intent-mlops demo traffic``), then ``intent-mlops monitor`` on exactly that
   phase's window (``--since``/``--until``): no drift expected;
5. drifted traffic (a shifted mix and an intent the champion never saw), then a monitor run on its
   window: drift detected, the ``intent-mlops.drift.detected`` event in the Prefect server;
6. the endpoint is stopped, whatever happened.

Each step is the command a person would type, run against the stack (``PREFECT_API_URL``), so every
flow run, artifact and event lands in the UIs; the commands print their own links.

    python -m flows.demo_monitor [--rate 5] [--minutes 1] [--port 5001]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

from flows import stack
from intent_mlops.config.environment import NotAProjectError, apply_defaults, project_root
from intent_mlops.config.params import load_config
from intent_mlops.demo.corpus import TEMPLATES
from intent_mlops.registry.models import CHAMPION

DRIFT_EVENT = "intent-mlops.drift.detected"


class DemoError(RuntimeError):
    """A step of the demo failed; the message says which and where its log is."""


def _cli() -> str:
    return str(Path(sys.executable).parent / "intent-mlops")


def _step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def _run(cmd: list[str], env: dict[str, str], root: Path) -> None:
    """Run a command as a person would (its output streams through); DemoError when it fails."""
    shown = " ".join(["intent-mlops", *cmd[1:]] if cmd[0] == _cli() else cmd)
    print(f"$ {shown}", flush=True)
    rc = subprocess.call(cmd, env=env, cwd=root)
    if rc != 0:
        raise DemoError(f"`{shown}` failed (exit {rc})")


def ensure_stack(root: Path, prefect_port: int, mlflow_port: int) -> dict[str, str]:
    """The running stack's URLs (``prefect``, ``mlflow``), starting it when it is not up."""
    record = root / stack.PID_FILE
    if record.exists():
        urls = json.loads(record.read_text())
        if stack.answers(f"{urls['prefect']}/api/health") and stack.answers(f"{urls['mlflow']}/health"):
            print(f"using the running stack (make serve): Prefect {urls['prefect']}, MLflow {urls['mlflow']}")
            return {"prefect": urls["prefect"], "mlflow": urls["mlflow"]}
        raise DemoError(f"{record} lists a stack that does not answer: `make stop`, then rerun")
    print("starting the stack of `make serve` (it stays up for the links below; `make stop` ends it)", flush=True)
    try:
        stack.start(root, prefect_port, mlflow_port, timeout=300)
    except stack.StackError as exc:
        raise DemoError(str(exc)) from None
    return {"prefect": f"http://{stack.HOST}:{prefect_port}", "mlflow": f"http://{stack.HOST}:{mlflow_port}"}


def champion_labels(root: Path, mlflow_url: str) -> set[str] | None:
    """The champion's intents (from its monitoring reference, else the tracked data); None when there
    is no champion."""
    import mlflow
    from mlflow.exceptions import MlflowException

    name = load_config(root / "params.yaml").mlflow.registered_model
    mlflow.set_tracking_uri(mlflow_url)
    try:
        version = mlflow.MlflowClient().get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None
    try:
        from intent_mlops.monitoring.reference import load_reference

        ref = load_reference(name, str(version.version))
    except ImportError:  # a checkout without the monitor flow
        ref = None
    if ref is not None:
        return set(ref.frame["label"].astype(str))
    print(
        f"note: champion v{version.version} has no monitoring reference (registered before monitoring existed): "
        "the monitor runs will say so; `intent-mlops retrain --force` registers a version that has one"
    )
    import pandas as pd

    return set(pd.read_csv(root / "data" / "intents.csv")["label"].astype(str))


def drift_batch(labels: set[str]) -> int:
    """The first corpus batch whose new intent the champion has never seen."""
    from intent_mlops.demo.corpus import BATCHES

    for batch, spec in sorted(BATCHES.items()):
        if spec.new_intent not in labels:
            return batch
    known = ", ".join(b.new_intent for b in BATCHES.values())
    raise DemoError(f"the champion knows every corpus batch's new intent ({known}): no unseen intent to send")


def start_endpoint(root: Path, port: int, env: dict[str, str], timeout: float = 300) -> subprocess.Popen[bytes]:
    """``intent-mlops serve-model`` in its own process group, once it answers ``/ping``."""
    if not stack.port_free(port):
        raise DemoError(f"port {port} is taken: stop what listens there or pass --port")
    log = root / ".intent-mlops" / "logs" / "demo-serve-model.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"$ intent-mlops serve-model --port {port}   (in the background; its log: {log})", flush=True)
    with open(log, "ab") as fh:
        proc = subprocess.Popen(
            [_cli(), "serve-model", "--port", str(port)],
            env=env,
            cwd=root,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while not stack.answers(f"http://{stack.HOST}:{port}/ping"):
        if proc.poll() is not None:
            raise DemoError(f"serve-model exited during start-up; its log: {log}\n{stack._tail(str(log))}")
        if time.monotonic() > deadline:
            stop_endpoint(proc)
            raise DemoError(f"serve-model did not answer within {timeout:.0f} s; its log: {log}")
        time.sleep(1)
    print(f"endpoint up: http://{stack.HOST}:{port}/invocations", flush=True)
    return proc


def stop_endpoint(proc: subprocess.Popen[bytes], grace: float = 20) -> None:
    """SIGTERM the endpoint's group (it flushes the prediction log), SIGKILL after ``grace`` s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def phase(
    root: Path,
    env: dict[str, str],
    url: str,
    rate: float,
    minutes: float,
    batch: int | None,
    flush: float,
    intents: list[str],
) -> None:
    """Traffic (of the champion's ``intents``, plus an unseen one with ``batch``), a pause for the
    log writer, then a monitor run over exactly that window."""
    start = datetime.now(UTC)
    traffic = ["demo", "traffic", "--rate", f"{rate:g}", "--minutes", f"{minutes:g}", "--url", url]
    if batch is not None:
        traffic += ["--drift", "--batch", str(batch)]
    if intents != list(TEMPLATES):
        traffic += ["--intents", ",".join(intents)]
    _run([_cli(), *traffic], env, root)
    time.sleep(max(2.0, 3 * flush))  # the background writer flushes every monitoring.flush_seconds
    end = datetime.now(UTC)
    _run([_cli(), "monitor", "--since", _iso(start), "--until", _iso(end)], env, root)


def drift_events(api: str, since: datetime, wait: float = 0.0) -> list[dict[str, object]]:
    """The drift events that occurred since ``since`` (newest first). Prefect's server stores events in
    batches (every 5 s by default), so ``wait`` keeps asking, once a second, until one is there."""
    deadline = time.monotonic() + wait
    while True:
        body = {
            "filter": {"event": {"name": [DRIFT_EVENT]},
                       "occurred": {"since": _iso(since), "until": _iso(datetime.now(UTC) + timedelta(seconds=5))}},
            "limit": 10,
        }  # fmt: skip
        request = urllib.request.Request(  # noqa: S310 (the stack's loopback URL)
            f"{api}/events/filter", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as r:  # noqa: S310
            events = json.load(r).get("events", [])
        if events or time.monotonic() >= deadline:
            return sorted(events, key=lambda e: str(e.get("occurred")), reverse=True)
        time.sleep(1.0)


def run(root: Path, rate: float, minutes: float, port: int, prefect_port: int, mlflow_port: int) -> int:
    apply_defaults(root)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # reading the champion's reference
    cfg = load_config(root / "params.yaml")
    if not cfg.monitoring.log:
        raise DemoError("monitoring.log is false in params.yaml: the endpoint would log nothing to monitor")
    _step("1. the stack: Prefect and MLflow UIs")
    urls = ensure_stack(root, prefect_port, mlflow_port)
    api = f"{urls['prefect']}/api"
    env = {**os.environ, "PREFECT_API_URL": api, "PREFECT_UI_URL": urls["prefect"]}
    monitor_env = {**env, "MLFLOW_TRACKING_URI": urls["mlflow"]}  # the monitor's links point at this UI
    _step("2. a champion")
    labels = champion_labels(root, urls["mlflow"])
    if labels is None:
        print("no champion yet: training the first one", flush=True)
        _run([_cli(), "retrain"], env, root)
        labels = champion_labels(root, urls["mlflow"])
        if labels is None:
            raise DemoError("retrain crowned no champion (see its decision above)")
    batch = drift_batch(labels)
    intents = [label for label in TEMPLATES if label in labels]  # normal traffic: what the champion knows
    if not intents:
        raise DemoError(f"the champion knows none of the demo corpus's intents ({', '.join(sorted(labels)[:5])}, ...)")
    print(f"the champion knows {len(labels)} intents; drifted traffic brings corpus batch {batch}'s new one")
    _step("3. serve the champion")
    proc = start_endpoint(root, port, env)
    url = f"http://{stack.HOST}:{port}"
    try:
        _step("4. normal traffic, then a monitor run over its window (expected: no drift)")
        phase(root, monitor_env, url, rate, minutes, None, cfg.monitoring.flush_seconds, intents)
        drifted = datetime.now(UTC)
        _step("5. drifted traffic, then a monitor run over its window (expected: drift detected, an event)")
        phase(root, monitor_env, url, rate, minutes, batch, cfg.monitoring.flush_seconds, intents)
    finally:
        _step("6. stop the endpoint")
        stop_endpoint(proc)
        print(f"serve-model stopped (prediction log: {root / '.intent-mlops' / 'predictions'})")
    events = drift_events(api, drifted, wait=20.0)
    if events:
        e = events[0]
        day = str(e.get("occurred", ""))[:10]
        print(f"\nevent {DRIFT_EVENT}: {urls['prefect']}/events/event/{day}/{e.get('id')}")
    else:
        print(f"\nno {DRIFT_EVENT} event since {_iso(drifted)} (see the second monitor run's outcome above)")
    print(f"Prefect UI: {urls['prefect']}/runs   MLflow UI: {urls['mlflow']}   (both stay up; make stop ends them)")
    return 0 if events else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m flows.demo_monitor", description=__doc__.splitlines()[0])
    p.add_argument("--project", default=None)
    p.add_argument("--rate", type=float, default=5.0, help="requests per second of each phase (default 5)")
    p.add_argument("--minutes", type=float, default=1.0, help="length of each traffic phase (default 1)")
    p.add_argument("--port", type=int, default=5001, help="the endpoint's port (default 5001)")
    p.add_argument("--prefect-port", type=int, default=4200, help="when the stack must be started")
    p.add_argument("--mlflow-port", type=int, default=5000, help="when the stack must be started")
    args = p.parse_args(argv)
    try:
        root = Path(args.project).resolve() if args.project else project_root()
        return run(root, args.rate, args.minutes, args.port, args.prefect_port, args.mlflow_port)
    except (DemoError, NotAProjectError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopped by Ctrl-C", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
