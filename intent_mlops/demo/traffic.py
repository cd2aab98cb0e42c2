"""Demo traffic for a running endpoint: ``intent-mlops demo traffic --rate R --minutes M [--drift]``.

Utterances come from the demo corpus's generator (same templates, openers, typos), with a seed of
their own so they are new texts, not the training rows. Normal traffic draws every intent of the
default corpus (``oos`` included) evenly. Drifted traffic is what the corpus's next batch brings:
the base intents in a shifted mix (the first half three times as often as the second) and partly in
the batch's new phrasings, plus the batch's new intent, one the champion trained on the default
corpus has never seen, at :data:`NEW_INTENT_SHARE` of the requests.

One text per request (what an online client sends), paced at about ``rate`` requests per second by
a few worker threads, each with its own keep-alive connection. Standard library only: the demo
must not depend on what Prefect happens to install.
"""

from __future__ import annotations

import http.client
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlsplit

from intent_mlops.demo import corpus

DEFAULT_URL = "http://127.0.0.1:5001"  # serve-model's default port
NEW_INTENT_SHARE = 0.25  # drifted traffic: share of requests of the batch's new intent
SHIFT_WEIGHT = 3.0  # drifted traffic: weight of the first half of the base intents (the rest: 1)
WORKERS = 4
TIMEOUT_S = 30.0


class TrafficError(RuntimeError):
    """The endpoint cannot be reached or the arguments make no traffic; the message says which."""


@dataclass
class Summary:
    """What a traffic run sent and what came back."""

    started: datetime
    finished: datetime
    sent: int = 0
    non_200: int = 0
    errors: int = 0  # no HTTP answer at all (connection reset, timeout)
    versions: Counter[str] = field(default_factory=Counter)
    answers: int = 0
    out_of_scope: int = 0
    sent_labels: Counter[str] = field(default_factory=Counter)
    first_error: str = ""

    @property
    def seconds(self) -> float:
        return (self.finished - self.started).total_seconds()

    def line(self) -> str:
        """The one-line summary the CLI prints."""
        rate = self.sent / self.seconds if self.seconds > 0 else 0.0
        versions = ", ".join(f"{v}: {n}" for v, n in sorted(self.versions.items())) or "none"
        oos = f"{100 * self.out_of_scope / self.answers:.1f} %" if self.answers else "n/a"
        failed = f", no answer: {self.errors}" if self.errors else ""
        first = f" (first: {self.first_error})" if self.first_error else ""
        return (
            f"sent {self.sent} requests in {self.seconds:.1f} s ({rate:.1f}/s), non-200: {self.non_200}{failed}; "
            f"answers per model version: {versions}; out of scope: {oos}{first}"
        )


def _weights(drift: bool, new_intent: str, base: list[str]) -> dict[str, float]:
    if not drift:
        return dict.fromkeys(base, 1.0)
    in_scope = [label for label in base if label != "oos"]
    shifted = {label: SHIFT_WEIGHT if i < len(in_scope) // 2 else 1.0 for i, label in enumerate(in_scope)}
    if "oos" in base:
        shifted["oos"] = 1.0
    total = sum(shifted.values())
    scale = (1 - NEW_INTENT_SHARE) / NEW_INTENT_SHARE / total  # the new intent gets weight 1
    return {**{label: w * scale for label, w in shifted.items()}, new_intent: 1.0}


def utterances(
    drift: bool = False, seed: int = 0, batch: int = 1, intents: Sequence[str] | None = None
) -> Iterator[tuple[str, str]]:
    """Endless ``(text, intent)`` pairs: the default corpus's mix (``intents``: only those of its
    intents, e.g. the ones a champion knows), or with ``drift`` the mix of corpus batch ``batch``
    (its new intent at :data:`NEW_INTENT_SHARE`, the base mix shifted)."""
    if batch not in corpus.BATCHES:
        raise TrafficError(f"--batch must be one of {sorted(corpus.BATCHES)}, got {batch}")
    base = list(corpus.TEMPLATES)
    if intents:
        unknown = sorted(set(intents) - set(base))
        if unknown:
            raise TrafficError(f"--intents: {', '.join(unknown)} not in the demo corpus ({', '.join(base)})")
        base = [label for label in base if label in set(intents)]
    return _stream(drift, seed, batch, base)


def _stream(drift: bool, seed: int, batch: int, base: list[str]) -> Iterator[tuple[str, str]]:
    spec = corpus.BATCHES[batch]
    rng = random.Random(f"intent-mlops-traffic:{seed}:{drift}:{batch}:{','.join(base)}")
    typo_rate = 0.04
    weights = _weights(drift, spec.new_intent, base)
    labels, cum = list(weights), list(weights.values())
    if not drift:
        while True:
            label = rng.choices(labels, cum)[0]
            yield corpus._utterance(rng.choice(corpus.TEMPLATES[label]), rng, typo_rate), label
    slots = {name: corpus.SLOTS.get(name, []) + spec.slots.get(name, []) for name in {**corpus.SLOTS, **spec.slots}}
    patterns = corpus.PATTERNS + list(spec.patterns)
    while True:
        label = rng.choices(labels, cum)[0]
        if label == spec.new_intent:
            templates = list(spec.new_templates)
        else:
            templates = corpus.TEMPLATES[label] + list(corpus.BATCH_PHRASINGS[label][batch - 1]) * 3
        yield corpus._utterance(rng.choice(templates), rng, typo_rate, patterns, slots), label


def _connection(url: str) -> Callable[[], http.client.HTTPConnection]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TrafficError(f"--url {url}: expected http://HOST:PORT, e.g. {DEFAULT_URL}")
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    return lambda: kind(parts.hostname or "", parts.port, timeout=TIMEOUT_S)


def check_endpoint(url: str) -> None:
    """TrafficError in one line when nothing answers ``GET /ping`` at ``url``."""
    conn = _connection(url)()
    try:
        conn.request("GET", _path(url, "/ping"))
        status = conn.getresponse().status
    except (OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise TrafficError(
            f"nothing answers at {url} ({reason}); start the endpoint first: intent-mlops serve-model"
        ) from None
    finally:
        conn.close()
    if status != 200:
        raise TrafficError(f"{url}/ping answered HTTP {status}: the endpoint is not ready")


def _path(url: str, route: str) -> str:
    return urlsplit(url).path.rstrip("/") + route


def send(
    url: str = DEFAULT_URL,
    rate: float = 2.0,
    minutes: float = 1.0,
    drift: bool = False,
    seed: int = 0,
    batch: int = 1,
    intents: Sequence[str] | None = None,
    workers: int = WORKERS,
    clock: Callable[[], float] = time.monotonic,
) -> Summary:
    """POST ``round(rate * minutes * 60)`` one-text requests to ``url``/invocations, request ``i``
    not before ``i / rate`` seconds after the start (a slow endpoint makes the run longer, never
    burstier); counts what came back."""
    if rate <= 0 or minutes <= 0:
        raise TrafficError(f"--rate and --minutes must be positive (got {rate} and {minutes})")
    total = round(rate * minutes * 60)
    if total < 1:
        raise TrafficError(f"--rate {rate} for --minutes {minutes} is less than one request")
    texts = utterances(drift, seed, batch, intents)
    check_endpoint(url)
    connect, route = _connection(url), _path(url, "/invocations")
    lock = threading.Lock()
    counter = iter(range(total))
    summary = Summary(started=datetime.now(UTC), finished=datetime.now(UTC))
    t0 = clock()

    def worker() -> None:
        conn = connect()
        try:
            while True:
                with lock:
                    i = next(counter, None)
                    if i is None:
                        return
                    text, label = next(texts)
                delay = t0 + i / rate - clock()
                if delay > 0:
                    time.sleep(delay)
                conn = _post(conn, connect, route, text, label, summary, lock)
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, name=f"traffic-{n}", daemon=True) for n in range(max(1, workers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    summary.finished = datetime.now(UTC)
    return summary


def _post(
    conn: http.client.HTTPConnection,
    connect: Callable[[], http.client.HTTPConnection],
    route: str,
    text: str,
    label: str,
    summary: Summary,
    lock: threading.Lock,
) -> http.client.HTTPConnection:
    """One request; returns the connection to use next (a fresh one after a failure)."""
    body = json.dumps({"inputs": {"text": [text]}}).encode()
    headers = {"Content-Type": "application/json"}
    try:
        try:
            conn.request("POST", route, body=body, headers=headers)
            response = conn.getresponse()
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            # the server closed an idle keep-alive connection (slow rates): send it again, once, on a new one
            conn.close()
            conn = connect()
            conn.request("POST", route, body=body, headers=headers)
            response = conn.getresponse()
        status, raw = response.status, response.read()
    except (OSError, http.client.HTTPException) as exc:
        conn.close()
        with lock:
            summary.sent += 1
            summary.sent_labels[label] += 1
            summary.errors += 1
            summary.first_error = summary.first_error or f"{type(exc).__name__}: {exc}"[:200]
        return connect()
    predictions = _predictions(raw) if status == 200 else []
    with lock:
        summary.sent += 1
        summary.sent_labels[label] += 1
        if status != 200:
            summary.non_200 += 1
            summary.first_error = summary.first_error or f"HTTP {status}: {raw[:200].decode(errors='replace')}"
        for p in predictions:
            summary.answers += 1
            summary.versions[str(p.get("model_version") or "unknown")] += 1
            summary.out_of_scope += bool(p.get("out_of_scope"))
    return conn


def _predictions(raw: bytes) -> list[dict[str, object]]:
    """The prediction dicts of a scoring server's answer (``{"predictions": [...]}``)."""
    try:
        payload = json.loads(raw)
    except ValueError:
        return []
    rows = payload.get("predictions", []) if isinstance(payload, dict) else payload
    return [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []
