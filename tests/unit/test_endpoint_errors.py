"""The endpoint `intent-mlops serve-model` starts, through real HTTP: every client error is the same
JSON shape with one line in this project's words, and the log warns about ``instances`` only for
requests that sent ``instances``."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import REPO
from tests.unit.test_cli_versions import registered_project, tiny_classifier  # noqa: F401  (fixtures)

JSON = "application/json"
CLIENT_ERRORS = {
    "form-encoded (curl -d)": ("POST", "/invocations", b"text=where+is+my+order", "application/x-www-form-urlencoded"),
    "plain text": ("POST", "/invocations", b"where is my order", "text/plain"),
    "no Content-Type": ("POST", "/invocations", b'{"inputs": {"text": ["hi"]}}', None),
    "latin-1": ("POST", "/invocations", b'{"inputs": {"text": ["hi"]}}', "application/json; charset=latin-1"),
    "empty list": ("POST", "/invocations", b'{"inputs": {"text": []}}', JSON),
    "no records": ("POST", "/invocations", b'{"dataframe_records": []}', JSON),
    "empty split": ("POST", "/invocations", b'{"dataframe_split": {"columns": ["text"], "data": []}}', JSON),
    "wrong shape": ("POST", "/invocations", b'{"text": ["hi"]}', JSON),
    "a list": ("POST", "/invocations", b'["hi"]', JSON),
    "inputs a string": ("POST", "/invocations", b'{"inputs": "hi"}', JSON),
    "no text field": ("POST", "/invocations", b'{"inputs": {"utterance": ["hi"]}}', JSON),
    "not JSON": ("POST", "/invocations", b"{oops", JSON),
    "blank text": ("POST", "/invocations", b'{"inputs": {"text": ["  "]}}', JSON),
    "null text": ("POST", "/invocations", b'{"dataframe_records": [{"text": null}]}', JSON),
    "bad top_k": ("POST", "/invocations", b'{"inputs": {"text": ["hi"]}, "params": {"top_k": 0}}', JSON),
    "csv without text": ("POST", "/invocations", b"utterance\nhi\n", "text/csv"),
    "unknown path": ("GET", "/predict", b"", None),
    "GET invocations": ("GET", "/invocations", b"", None),
}
WORDS_OF_MLFLOW = (
    "array(",
    "dtype",
    "Failed to predict",
    "DataFrame",
    "MLflow",
    "Traceback",
    "scoring protocol",
    "schema",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _request(port: int, method: str, path: str, body: bytes, content_type: str | None) -> tuple[int, str, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request(method, path, body=body or None, headers={"Content-Type": content_type} if content_type else {})
        r = conn.getresponse()
        return r.status, r.getheader("content-type") or "", r.read()
    finally:
        conn.close()


def test_every_client_error_is_one_json_shape_in_the_projects_words(registered_project: Path) -> None:  # noqa: F811
    port = _free_port()
    env = {**os.environ, "PREFECT_HOME": str(registered_project.parent / "prefect-home")}
    cmd = [sys.executable, "-m", "flows.cli", "--project", str(registered_project), "serve-model", "--version", "1",
           "--port", str(port)]  # fmt: skip
    server = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if _request(port, "GET", "/ping", b"", None)[0] == 200:
                    break
            except OSError:
                assert server.poll() is None, server.stdout.read() if server.stdout else ""
                assert time.monotonic() < deadline, "serve-model did not answer /ping"
                time.sleep(1)
        ok = _request(port, "POST", "/invocations", b'{"inputs": {"text": ["where is my order"]}}', JSON)
        assert ok[0] == 200 and json.loads(ok[2])["predictions"][0]["model_version"] == "intent-classifier/1"
        answers = {case: _request(port, *request) for case, request in CLIENT_ERRORS.items()}
        instances = _request(port, "POST", "/invocations", b'{"instances": [{"utterance": "hi"}]}', JSON)
    finally:
        server.terminate()
        log = server.communicate(timeout=60)[0]

    for case, (status, content_type, raw) in answers.items():
        assert 400 <= status < 500, (case, status, raw)
        assert content_type == JSON, (case, content_type, raw)
        body = json.loads(raw)
        assert set(body) == {"error_code", "message"}, (case, body)
        message = body["message"]
        assert message and "\n" not in message and len(message) <= 500, (case, message)
        assert not any(words in message for words in WORDS_OF_MLFLOW), (case, message)
    assert answers["form-encoded (curl -d)"][0] == 415
    assert "Content-Type: application/json" in json.loads(answers["form-encoded (curl -d)"][2])["message"]
    assert "no text to classify" in json.loads(answers["empty list"][2])["message"]
    assert instances[0] == 400 and "no field 'text'" in json.loads(instances[2])["message"]
    assert "`instances`" not in log, "MLflow's warning about instances, for requests that never sent instances"
