"""``intent-mlops demo traffic`` against a tiny local HTTP server (no model): pacing, request shape,
the summary's counts, drifted mix, and one-line errors."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from flows.cli import main
from intent_mlops.demo import corpus
from intent_mlops.demo.traffic import NEW_INTENT_SHARE, TrafficError, send, utterances


class _Endpoint(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like uvicorn
    received: list[dict[str, object]]
    fail_every = 0  # answer every n-th request with a 500 (0: never)
    close_after = False  # close the connection after each answer without saying so

    def do_GET(self) -> None:
        self._answer(200 if self.path == "/ping" else 404, b"\n")

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.received.append({"body": body, "type": self.headers["Content-Type"], "path": self.path})
        n = len(self.received)
        if self.fail_every and n % self.fail_every == 0:
            self._answer(500, b'{"error_code": "INTERNAL_ERROR", "message": "boom"}')
            return
        texts = body["inputs"]["text"]
        version = "intent-classifier/1" if n % 2 else "intent-classifier/2"
        preds = [{"label": "x", "out_of_scope": n % 4 == 0, "model_version": version} for _ in texts]
        self._answer(200, json.dumps({"predictions": preds}).encode())

    def _answer(self, status: int, raw: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)
        if self.close_after:
            self.close_connection = True

    def log_message(self, *args: object) -> None:  # quiet
        pass


@pytest.fixture
def endpoint() -> Iterator[tuple[str, type[_Endpoint]]]:
    handler = type("Handler", (_Endpoint,), {"received": [], "fail_every": 0, "close_after": False})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def _closed_port_url() -> str:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Endpoint)
    port = server.server_address[1]
    server.server_close()
    return f"http://127.0.0.1:{port}"


def test_sends_paced_one_text_requests_and_counts_the_answers(endpoint: tuple[str, type[_Endpoint]]) -> None:
    url, handler = endpoint
    t0 = time.monotonic()
    summary = send(url, rate=40, minutes=0.5 / 60, seed=1)  # 20 requests over about half a second
    elapsed = time.monotonic() - t0
    assert summary.sent == len(handler.received) == 20
    assert elapsed >= 19 / 40 - 0.02  # paced, not a burst
    assert summary.non_200 == summary.errors == 0
    assert summary.versions == Counter({"intent-classifier/1": 10, "intent-classifier/2": 10})
    assert summary.answers == 20 and summary.out_of_scope == 5
    for request in handler.received:
        assert request["path"] == "/invocations" and request["type"] == "application/json"
        texts = request["body"]["inputs"]["text"]  # type: ignore[index]
        assert isinstance(texts, list) and len(texts) == 1 and isinstance(texts[0], str) and texts[0]
    line = summary.line()
    assert "sent 20 requests" in line and "non-200: 0" in line and "out of scope: 25.0 %" in line
    assert "intent-classifier/1: 10, intent-classifier/2: 10" in line and "\n" not in line


def test_counts_non_200_answers(endpoint: tuple[str, type[_Endpoint]]) -> None:
    url, handler = endpoint
    handler.fail_every = 3
    summary = send(url, rate=200, minutes=0.1 / 60, seed=2)  # 20 requests
    assert summary.sent == 20 and summary.non_200 == 6 and summary.answers == 14
    assert "non-200: 6" in summary.line() and "HTTP 500" in summary.line()


def test_an_idle_connection_the_server_closed_is_reopened(endpoint: tuple[str, type[_Endpoint]]) -> None:
    url, handler = endpoint
    handler.close_after = True  # like uvicorn's keep-alive timeout, every connection ends after one answer
    summary = send(url, rate=100, minutes=0.1 / 60, workers=2)  # 10 requests
    assert summary.sent == len(handler.received) == 10 and summary.errors == summary.non_200 == 0


def test_nothing_listening_is_one_line() -> None:
    url = _closed_port_url()
    with pytest.raises(TrafficError, match=rf"nothing answers at {url} .*serve-model") as err:
        send(url, rate=1, minutes=0.1)
    assert "\n" not in str(err.value)


def test_bad_arguments_are_one_line() -> None:
    with pytest.raises(TrafficError, match="positive"):
        send("http://127.0.0.1:1", rate=0, minutes=1)
    with pytest.raises(TrafficError, match="--batch must be one of"):
        send("http://127.0.0.1:1", rate=1, minutes=1, drift=True, batch=99)
    with pytest.raises(TrafficError, match="expected http://HOST:PORT"):
        send("localhost:5001", rate=1, minutes=1)


def test_drift_shifts_the_mix_and_adds_the_batch_intent() -> None:
    normal = Counter(label for _, label in itertools.islice(utterances(False, seed=3), 5000))
    drifted = Counter(label for _, label in itertools.islice(utterances(True, seed=3), 5000))
    assert set(normal) == set(corpus.TEMPLATES)  # the default corpus's intents, nothing new
    new = corpus.BATCHES[1].new_intent
    assert set(drifted) == {*corpus.TEMPLATES, new}
    assert abs(drifted[new] / 5000 - NEW_INTENT_SHARE) < 0.03
    first, last = list(corpus.TEMPLATES)[0], [x for x in corpus.TEMPLATES if x != "oos"][-1]
    assert drifted[first] > 2 * drifted[last]  # the mix moved
    assert max(normal.values()) < 1.5 * min(normal.values())  # normal traffic is even
    assert corpus.BATCHES[2].new_intent in {label for _, label in itertools.islice(utterances(True, 3, 2), 500)}


def test_intents_restricts_the_base_mix() -> None:
    four = ["cancel_order", "store_hours", "reset_password", "track_order"]
    normal = Counter(label for _, label in itertools.islice(utterances(False, 3, intents=four), 400))
    assert set(normal) == set(four)
    drifted = Counter(label for _, label in itertools.islice(utterances(True, 3, intents=four), 2000))
    assert set(drifted) == {*four, corpus.BATCHES[1].new_intent}
    assert abs(drifted[corpus.BATCHES[1].new_intent] / 2000 - NEW_INTENT_SHARE) < 0.04
    with pytest.raises(TrafficError, match="--intents: nope not in the demo corpus"):
        utterances(intents=["nope", "track_order"])


def test_same_seed_same_texts_and_new_texts_for_another() -> None:
    a = [t for t, _ in itertools.islice(utterances(False, seed=7), 50)]
    assert a == [t for t, _ in itertools.islice(utterances(False, seed=7), 50)]
    assert a != [t for t, _ in itertools.islice(utterances(False, seed=8), 50)]


def test_cli_prints_the_summary(endpoint: tuple[str, type[_Endpoint]], capsys: pytest.CaptureFixture[str]) -> None:
    url, _ = endpoint
    argv = ["--rate", "100", "--minutes", "0.002", "--url", url, "--drift", "--intents", "track_order,store_hours"]
    assert main(["demo", "traffic", *argv]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"sending drifted traffic (corpus batch 1) to {url}")
    assert out[-1].startswith("sent 12 requests") and "non-200: 0" in out[-1]


def test_cli_nothing_listening(capsys: pytest.CaptureFixture[str]) -> None:
    url = _closed_port_url()
    assert main(["demo", "traffic", "--minutes", "0.1", "--url", url]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: nothing answers at {url}") and err.count("\n") == 1
