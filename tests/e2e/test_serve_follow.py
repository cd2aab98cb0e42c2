"""``intent-mlops serve-model`` as a user runs it: it follows the champion alias under load, refuses a
broken version, logs every answer, and a SIGKILL loses at most the last second of the log (issue 21)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import mlflow
import psutil
import pytest
import yaml

from tests.unit.test_inference_predictor import INTENTS, make_classifier

pytestmark = pytest.mark.e2e
NAME = "intent-classifier"
FOLLOW_SECONDS = 2.0
CLIENTS = 32


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def registry(tmp_path: Path, tiny_model_dir: Path) -> Iterator[Path]:
    """A project with versions 1 and 2 of the tiny classifier (different weights) and a broken 3."""
    from intent_mlops.inference.pyfunc import log_pyfunc

    root = tmp_path / "project"
    root.mkdir()
    uri = f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"
    (root / "mlruns").mkdir()
    (root / "params.yaml").write_text(
        yaml.safe_dump(
            {
                "mlflow": {"tracking_uri": uri},
                "serving": {"follow_seconds": FOLLOW_SECONDS},
                "monitoring": {"flush_seconds": 0.5},
            }
        )
    )
    mlflow.set_tracking_uri(uri)
    exp = mlflow.create_experiment("intent-classifier", artifact_location=str(root / "mlruns" / "artifacts"))
    for i in range(3):
        folder = make_classifier(tiny_model_dir, tmp_path / f"clf{i}", INTENTS if i != 1 else INTENTS[::-1])
        with mlflow.start_run(experiment_id=exp):
            info = log_pyfunc(folder, "model", ["where is my order"], None, registered_model_name=NAME)
    broken = next(Path(mlflow.artifacts.download_artifacts(info.model_uri, dst_path=str(tmp_path / "peek"))).rglob(
        "model.safetensors"))  # fmt: skip
    stored = next((root / "mlruns" / "artifacts").rglob(str(broken.relative_to(tmp_path / "peek"))))
    stored.unlink()  # version 3 cannot load: a swap to it must be refused
    client = mlflow.MlflowClient()
    client.set_registered_model_alias(NAME, "champion", "1")
    yield root
    mlflow.set_tracking_uri("")


def _serve(root: Path, port: int, *extra: str) -> subprocess.Popen[str]:
    """serve-model in its own process; its output goes to ``serve.log`` (a pipe nobody reads would fill
    up with the access log and block the server)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    out = (root / "serve.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "--project", str(root), "serve-model", "--port", str(port), *extra],
        env=env, stdout=out, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 180
    while True:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", "/ping")
            if c.getresponse().status == 200:
                return proc
        except OSError:
            if proc.poll() is not None:
                raise AssertionError((root / "serve.log").read_text()[-3000:]) from None
            assert time.monotonic() < deadline, "serve-model did not start"
            time.sleep(0.5)


def _ask(conn: http.client.HTTPConnection, text: str, request_id: str) -> tuple[int, str]:
    body = json.dumps({"inputs": {"text": [text]}})
    conn.request("POST", "/invocations", body, {"Content-Type": "application/json", "X-Request-ID": request_id})
    r = conn.getresponse()
    raw = r.read()
    if r.status != 200:
        return r.status, raw.decode()[:200]
    return 200, json.loads(raw)["predictions"][0]["model_version"]


class Load:
    """CLIENTS threads, each sending one request after the other and keeping (start, end, status, version)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.stop = threading.Event()
        self.answers: list[list[tuple[float, float, int, str]]] = [[] for _ in range(CLIENTS)]
        self.threads = [threading.Thread(target=self._client, args=(i,)) for i in range(CLIENTS)]

    def _client(self, i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        n = 0
        while not self.stop.is_set():
            t0 = time.monotonic()
            status, version = _ask(conn, f"where is my order number {i}-{n}", f"c{i}-{n}")
            self.answers[i].append((t0, time.monotonic(), status, version))
            n += 1

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(120)

    def first_answer_of(self, version: str, after: float) -> float | None:
        times = [end for client in self.answers for (_, end, s, v) in client if v == version and end >= after]
        return min(times) if times else None


def _rss_mb(pid: int) -> float:
    proc = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)]) / 2**20


def _wait_for(load: Load, label: str, since: float, limit: float) -> float:
    deadline = since + limit + 30  # look a while longer, then judge the delay
    while time.monotonic() < deadline:
        seen = load.first_answer_of(label, since)
        if seen is not None:
            return seen - since
        time.sleep(0.1)
    raise AssertionError(f"{label} never answered")


def test_follows_the_champion_under_load_and_refuses_a_broken_version(registry: Path) -> None:
    client = mlflow.MlflowClient()
    port = _free_port()
    server = _serve(registry, port)
    try:
        with Load(port) as load:
            time.sleep(3)
            moved = time.monotonic()
            client.set_registered_model_alias(NAME, "champion", "2")  # a promotion
            promote_delay = _wait_for(load, f"{NAME}/2", moved, 2 * FOLLOW_SECONDS)
            time.sleep(2)
            moved = time.monotonic()
            client.set_registered_model_alias(NAME, "champion", "1")  # a rollback
            rollback_delay = _wait_for(load, f"{NAME}/1", moved, 2 * FOLLOW_SECONDS)
            time.sleep(2)
        statuses = [a[2] for c in load.answers for a in c]
        assert statuses and set(statuses) == {200}, {s for s in statuses if s != 200}
        for c in load.answers:  # each client (one request after the other) sees 1 -> 2 -> 1, once each
            versions = [a[3] for a in c]
            changes = [(a, b) for a, b in zip(versions, versions[1:], strict=False) if a != b]
            assert changes == [(f"{NAME}/1", f"{NAME}/2"), (f"{NAME}/2", f"{NAME}/1")], changes
        assert promote_delay <= 2 * FOLLOW_SECONDS + 1.0 and rollback_delay <= 2 * FOLLOW_SECONDS + 1.0, (
            promote_delay,
            rollback_delay,
        )

        # a version that cannot load is never swapped in: the old one keeps answering
        client.set_registered_model_alias(NAME, "champion", "3")
        time.sleep(3 * FOLLOW_SECONDS)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        assert _ask(conn, "hello", "after-broken") == (200, f"{NAME}/1")

        # memory: 10 swaps between 1 and 2, RSS after the last <= 1.2 x after the first
        rss: list[float] = []
        for i in range(10):
            target = "2" if i % 2 == 0 else "1"
            client.set_registered_model_alias(NAME, "champion", target)
            deadline = time.monotonic() + 10 * FOLLOW_SECONDS
            while _ask(conn, "hello", f"swap-{i}-{time.monotonic()}")[1] != f"{NAME}/{target}":
                assert time.monotonic() < deadline, f"swap {i} to {target} did not happen"
                time.sleep(0.2)
            rss.append(_rss_mb(server.pid))
        assert rss[-1] <= 1.2 * rss[0], rss
        print(f"swap delays: promotion {promote_delay:.2f} s, rollback {rollback_delay:.2f} s (poll "
              f"{FOLLOW_SECONDS} s); {sum(len(c) for c in load.answers)} answers to {CLIENTS} clients; RSS after "
              f"swap 1 {rss[0]:.0f} MB, after swap 10 {rss[-1]:.0f} MB")  # fmt: skip
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)
    out = (registry / "serve.log").read_text()
    assert "not swapping to intent-classifier/3" in out, out[-3000:]

    # every answer is in the prediction log, with the version that gave it
    from intent_mlops.config.params import load_run_config
    from intent_mlops.monitoring.log import open_store, read_log

    logged = read_log(open_store(registry, load_run_config(registry).monitoring), datetime.now(UTC) - timedelta(1))
    answered = {f"c{i}-{n}": a[3] for i, c in enumerate(load.answers) for n, a in enumerate(c)}
    got = dict(zip(logged["request_id"], logged["model_version"], strict=True))
    assert {k: got.get(k) for k in answered} == answered


def test_sigkill_loses_at_most_the_last_second_of_the_log(registry: Path) -> None:
    port = _free_port()
    server = _serve(registry, port, "--version", "1")
    sent: list[tuple[str, float]] = []
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        until = time.monotonic() + 4
        n = 0
        while time.monotonic() < until:
            status, answer = _ask(conn, f"text {n}", f"k{n}")
            assert status == 200, answer
            sent.append((f"k{n}", time.monotonic()))
            n += 1
            time.sleep(0.01)
    finally:
        killed = time.monotonic()
        os.kill(server.pid, signal.SIGKILL)
        server.wait(30)
    from intent_mlops.config.params import load_run_config
    from intent_mlops.monitoring.log import open_store, read_log

    logged = set(read_log(open_store(registry, load_run_config(registry).monitoring), datetime.now(UTC) - timedelta(1))[
        "request_id"])  # fmt: skip
    older = [rid for rid, t in sent if t < killed - 1.0]
    assert older and not [rid for rid in older if rid not in logged]
    assert logged <= {rid for rid, _ in sent}  # a file half-written at the kill is hidden, never read
