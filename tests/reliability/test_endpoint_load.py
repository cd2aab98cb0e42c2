"""The online endpoint under bounded loopback load (issue 15, item 7): serve-model's app in its own
process, 32 concurrent clients, 5,000 requests with 10 % malformed ones mixed in."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import mlflow
import numpy as np
import pytest

from tests.unit.test_inference_predictor import tiny_classifier  # noqa: F401  (fixture)

pytestmark = [pytest.mark.reliability, pytest.mark.slow]
CLIENTS, REQUESTS, WARM_UP = 32, 5000, 300
MALFORMED: list[tuple[bytes, str | None]] = [
    (b'{"inputs": {"text": [""]}}', "application/json"),  # empty text
    (b'{"dataframe_records": [{"utterance": "hi"}]}', "application/json"),  # missing field
    (b"{not json", "application/json"),
    (b'{"inputs": {"text": [7]}}', "application/json"),  # not a string
    (json.dumps({"inputs": {"text": ["x" * 5000]}}).encode(), "application/json"),  # oversized text
    (b'{"inputs": {"text": ["hi"]}}', None),  # no content type
    (b"text=hi", "text/plain"),  # wrong content type
]
GOOD = json.dumps({"inputs": {"text": ["where is my order", "reset my password please"]}}).encode()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _client(port: int, jobs: list[int], out: list[tuple[int, bool, float]], lock: threading.Lock) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for j in jobs:
        bad = j % 10 == 0
        body, ctype = MALFORMED[(j // 10) % len(MALFORMED)] if bad else (GOOD, "application/json")
        t = time.perf_counter()
        conn.request("POST", "/invocations", body=body, headers={"Content-Type": ctype} if ctype else {})
        r = conn.getresponse()
        r.read()
        with lock:
            out.append((r.status, bad, time.perf_counter() - t))
        if r.getheader("connection", "").lower() == "close":
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.close()


def _load(port: int, ids: range) -> tuple[list[tuple[int, bool, float]], float]:
    out: list[tuple[int, bool, float]] = []
    lock = threading.Lock()
    shares = [list(ids[i::CLIENTS]) for i in range(CLIENTS)]
    threads = [threading.Thread(target=_client, args=(port, s, out, lock)) for s in shares]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join(300)
    return out, time.perf_counter() - t


def test_endpoint_under_load(
    tiny_classifier: Path,  # noqa: F811
    tmp_path: Path,
    record: Callable[[str, str], None],
) -> None:
    from intent_mlops.inference.pyfunc import log_pyfunc

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(experiment_id=mlflow.create_experiment("load", artifact_location=str(tmp_path / "a")))
    with mlflow.start_run():
        info = log_pyfunc(Path(shutil.copytree(tiny_classifier, tmp_path / "model")), "model", ["hello"], None)
    port = _free_port()
    code = (
        "import mlflow, uvicorn\n"
        "from intent_mlops.inference.server import build_app\n"
        f"uvicorn.run(build_app(mlflow.pyfunc.load_model({info.model_uri!r})), host='127.0.0.1', port={port}, "
        "workers=1, log_level='warning')\n"
    )
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    server = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                c.request("GET", "/ping")
                if c.getresponse().status == 200:
                    break
            except OSError:
                assert server.poll() is None, server.stdout.read() if server.stdout else ""
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.5)
        warm, _ = _load(port, range(WARM_UP))
        rss_warm = _rss_mb(server.pid)
        got, seconds = _load(port, range(WARM_UP, WARM_UP + REQUESTS))
        rss_end = _rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(30)
    assert len(got) == REQUESTS, f"{REQUESTS - len(got)} requests got no answer"
    five = [s for s, _, _ in got + warm if s >= 500]
    assert not five, f"{len(five)} server errors"
    bad = [s for s, b, _ in got if b]
    assert bad and all(400 <= s < 500 for s in bad), sorted(set(bad))
    assert all(s == 200 for s, b, _ in got if not b)
    assert rss_end <= 1.2 * rss_warm, (rss_warm, rss_end)
    ms = np.array([t for _, b, t in got if not b]) * 1000
    record(
        f"endpoint load: {CLIENTS} clients, {REQUESTS} requests, 10 % malformed (tiny model)",
        f"0 5xx; {len(bad)} malformed all 4xx; {REQUESTS / seconds:.0f} req/s; p50 {np.percentile(ms, 50):.0f} ms, "
        f"p99 {np.percentile(ms, 99):.0f} ms; RSS {rss_warm:.0f} -> {rss_end:.0f} MB",
    )
