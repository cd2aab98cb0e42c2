"""The model behind ``serve-model``: one loaded version at a time, swapped atomically when its alias moves.

:class:`ServedModel` is what MLflow's scoring app calls (it has the two things the app uses of a
pyfunc: ``metadata`` and ``predict(data, params)``). Each request reads the current version once,
so a request in flight finishes on the model it started with, and its answers carry that
version's label. It also hands every answer to the prediction log (off the request path).

:class:`AliasFollower` is a daemon thread: every ``serving.follow_seconds`` (or at once when
:meth:`~AliasFollower.nudge` is called, e.g. on a promoted / rolled-back event) it reads the
alias; when the alias names another version it loads that version beside the serving one, warms
it up and checks it on the version's own logged input example, and only then swaps. A version
that fails to load or to check is never swapped in: the old one keeps serving, the failure is
logged and reported once (``on_swap_failed``), and that version is not tried again until the
alias moves on. A registry that does not answer is a warning, not a stop.
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import gc
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from intent_mlops.monitoring.log import PredictionLog

log = logging.getLogger(__name__)

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
"""The request's id (its ``X-Request-ID`` header, or a new one), set by the app for the log."""


@dataclass(frozen=True)
class Loaded:
    model: Any  # an mlflow PyFuncModel
    version: str
    label: str  # <registered model>/<version>
    folder: Path | None = None  # the fetched model folder (its logged input example)


class ServedModel:
    """The current version's pyfunc, with the prediction log; swap with :meth:`swap`."""

    def __init__(self, loaded: Loaded, prediction_log: PredictionLog | None = None) -> None:
        self._current = loaded
        self.prediction_log = prediction_log
        self.swaps = 0

    @property
    def current(self) -> Loaded:
        return self._current

    @property
    def metadata(self) -> Any:
        return self._current.model.metadata

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        current = self._current  # read once: a swap during this request does not change its model
        start = time.perf_counter()
        answers = current.model.predict(data, params=params)
        if self.prediction_log is not None:
            latency_ms = 1000.0 * (time.perf_counter() - start)
            try:
                self.prediction_log.record_answers(
                    _texts(data), answers, request_id=REQUEST_ID.get() or uuid.uuid4().hex, latency_ms=latency_ms
                )
            except Exception:  # the answer stands; a log that cannot take it is not the client's problem
                log.warning("prediction log: could not record a request", exc_info=True)
        return answers

    def swap(self, loaded: Loaded) -> Loaded:
        """Serve ``loaded`` from the next request on; returns the version it replaced."""
        old, self._current = self._current, loaded
        self.swaps += 1
        return old


def _texts(data: Any) -> list[str]:
    """The texts of a request as the scoring app parsed it (a DataFrame, or a dict of arrays / lists)."""
    from intent_mlops.inference.pyfunc import texts_from

    if isinstance(data, dict) and "text" in data and hasattr(data["text"], "tolist"):
        data = {"text": data["text"].tolist()}
    return [str(t) for t in texts_from(data)]


def load_version(name: str, version: str, cache: Path) -> Loaded:
    """Fetch (once, into ``cache``) and load a registered version as the scoring app's pyfunc, its
    answers labelled ``<name>/<version>``."""
    import mlflow

    from intent_mlops.registry.champion import fetch_model

    folder = fetch_model(name, version, cache)
    label = f"{name}/{version}"
    model = mlflow.pyfunc.load_model(str(folder), model_config={"model_version": label})
    return Loaded(model, version, label, folder)


def check_loaded(loaded: Loaded, warmup: int = 3) -> None:
    """Warm the model up and check it on its own logged input example; ValueError saying what is wrong."""
    example = loaded.model.metadata.load_input_example(str(loaded.folder)) if loaded.folder else None
    if example is None:
        raise ValueError(f"{loaded.label}: no logged input example to check it on")
    answers: list[dict[str, Any]] = []
    for _ in range(max(1, warmup)):
        answers = loaded.model.predict(example)
    if len(answers) != len(example):
        raise ValueError(f"{loaded.label}: {len(answers)} answers for {len(example)} example texts")
    for a in answers:
        if a.get("model_version") != loaded.label:
            raise ValueError(f"{loaded.label}: answers are labelled {a.get('model_version')!r}")
        if not isinstance(a.get("label"), str) or not math.isfinite(float(a.get("score", float("nan")))):
            raise ValueError(f"{loaded.label}: a malformed answer on the input example: {a}")


def release_memory() -> None:
    """Collect the replaced model and give freed heap back to the OS (glibc), so RSS stays flat over swaps."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class AliasFollower(threading.Thread):
    """Keeps a :class:`ServedModel` on the version an alias names (see the module docstring)."""

    def __init__(
        self,
        served: ServedModel,
        name: str,
        alias: str,
        *,
        interval: float,
        read_alias: Callable[[], str | None],
        load: Callable[[str], Loaded],
        check: Callable[[Loaded], None] = check_loaded,
        on_swap: Callable[[Loaded, Loaded], None] | None = None,
        on_swap_failed: Callable[[str, str], None] | None = None,
    ) -> None:
        super().__init__(name=f"follow-{alias}", daemon=True)
        self.served = served
        self.model_name = name
        self.alias = alias
        self.interval = interval
        self.read_alias = read_alias
        self.load = load
        self.check = check
        self.on_swap = on_swap
        self.on_swap_failed = on_swap_failed
        self.failed: dict[str, str] = {}  # version -> why, not tried again while the alias names it
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._registry_down = False

    def nudge(self) -> None:
        """Look at the alias now (an event said it moved)."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            if not self._stop.is_set():
                self.step()

    def step(self) -> str | None:
        """One look at the alias; returns the version now serving when it changed."""
        try:
            target = self.read_alias()
        except Exception as exc:  # the registry is down or slow: keep serving what we have
            if not self._registry_down:
                log.warning("cannot read %s@%s (%s); serving %s meanwhile", self.model_name, self.alias,
                            " ".join(str(exc).split())[:200], self.served.current.label)  # fmt: skip
            self._registry_down = True
            return None
        if self._registry_down:
            log.info("registry answers again")
            self._registry_down = False
        if target is None or target == self.served.current.version or target in self.failed:
            return None
        started = time.perf_counter()
        try:
            new = self.load(target)
            self.check(new)
        except Exception as exc:
            why = " ".join(f"{type(exc).__name__}: {exc}".split())[:500]
            self.failed[target] = why
            log.error("not swapping to %s/%s: %s; %s keeps serving", self.model_name, target, why,
                      self.served.current.label)  # fmt: skip
            if self.on_swap_failed is not None:
                try:
                    self.on_swap_failed(target, why)
                except Exception:  # a notification only
                    log.debug("swap-failed notification failed", exc_info=True)
            release_memory()
            return None
        old = self.served.swap(new)
        self.failed.clear()
        log.info("%s@%s moved: now serving %s (was %s; loaded and checked in %.1f s)", self.model_name, self.alias,
                 new.label, old.label, time.perf_counter() - started)  # fmt: skip
        if self.on_swap is not None:
            self.on_swap(old, new)
        del old
        release_memory()
        return new.version
