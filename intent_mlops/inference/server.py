"""The online endpoint behind ``intent-mlops serve-model``: MLflow's own scoring app for one version.

It is exactly what ``mlflow models serve -m models:/intent-classifier/N`` runs (same routes:
``/ping``, ``/health``, ``/version``, ``/invocations``; same request formats), plus one layer that
gives every client error one JSON shape, ``{"error_code": ..., "message": ...}``, with a message
in this project's words. MLflow's app answers a form-encoded POST (a plain ``curl -d``) with a
plain-text 415, an empty list with a numpy repr of the parsed data, a POST without a
``Content-Type`` with a 500 (``content_type.split`` on None), and warns about ``instances`` in the
log for requests that never used it. So a JSON request is checked here before MLflow parses it;
the 4xx that remain (the model's own 400s, :mod:`.pyfunc`, and unknown routes) are rewritten into
the same shape. Server faults stay 500s.

``serve-model`` wraps the loaded version in :class:`~.follow.ServedModel` (the prediction log, and
the swap when the alias moves, see :mod:`.follow`); every answer names the version that produced
it, and every response carries an ``X-Request-ID`` (the client's, or a new one), the id the
prediction log records.
"""

from __future__ import annotations

import contextlib
import contextvars
import csv
import io
import json
import logging
import re
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from intent_mlops.inference.follow import REQUEST_ID

if TYPE_CHECKING:
    from intent_mlops.inference.follow import AliasFollower, ServedModel
    from intent_mlops.monitoring.log import PredictionLog

DEFAULT_PORT = 5001  # beside the MLflow UI's 5000 (CONVENTIONS.md)
EXAMPLE = '{"inputs": {"text": ["where is my order"]}}'
SEND_JSON = f"send JSON with -H 'Content-Type: application/json', e.g. -d '{EXAMPLE}'"
CONTENT_TYPES = ("application/json", "text/csv", "application/vnd.apache.parquet")  # MLflow's scoring formats
INPUT_KEYS = ("inputs", "dataframe_records", "dataframe_split", "instances")
ROUTES = "POST /invocations; GET /ping, /health, /version"
_MLFLOW_PREFIX = re.compile(r"^Failed to predict data .*?\. \nError: ", re.DOTALL)  # a repr of the parsed data
_USES_INSTANCES: contextvars.ContextVar[bool] = contextvars.ContextVar("uses_instances", default=False)


class _InstancesWarningOnlyForInstances(logging.Filter):
    """MLflow warns about converting ``instances`` after *any* schema failure; keep it for the
    requests that sent ``instances`` (the request's flag travels in a context variable)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return _USES_INSTANCES.get() or "`instances`" not in record.getMessage()


def build_app(model: Any) -> Any:
    """The FastAPI app serving a loaded pyfunc ``model``."""
    from fastapi import Request
    from mlflow.pyfunc import scoring_server

    app = scoring_server.init(model)
    scoring_log = logging.getLogger(scoring_server.__name__)
    if not any(isinstance(f, _InstancesWarningOnlyForInstances) for f in scoring_log.filters):
        scoring_log.addFilter(_InstancesWarningOnlyForInstances())

    @app.middleware("http")
    async def one_error_format(request: Request, call_next: Any) -> Any:
        request_id = (request.headers.get("x-request-id") or "")[:128] or uuid.uuid4().hex
        REQUEST_ID.set(request_id)
        response = await _answer(request, call_next)
        response.headers["X-Request-ID"] = request_id
        return response

    async def _answer(request: Request, call_next: Any) -> Any:
        if request.method == "POST" and request.url.path == "/invocations":
            body = await request.body()
            problem = request_problem(request.headers.get("content-type"), body)
            if problem is not None:
                return _error(*problem)
            _USES_INSTANCES.set(b'"instances"' in body)
        response = await call_next(request)
        if 400 <= response.status_code < 500:
            raw = b"".join([chunk async for chunk in response.body_iterator])
            return _error(response.status_code, client_message(response.status_code, raw, request), raw)
        return response

    return app


def _error(status: int, message: str, raw: bytes = b"") -> Any:
    from fastapi.responses import JSONResponse

    code = {400: "INVALID_PARAMETER_VALUE", 404: "ENDPOINT_NOT_FOUND"}.get(status, "BAD_REQUEST")
    with contextlib.suppress(ValueError, AttributeError):  # MLflow's code when it answered
        code = str(json.loads(raw).get("error_code") or code)
    return JSONResponse({"error_code": code, "message": message}, status_code=status)


def client_message(status: int, raw: bytes, request: Any) -> str:
    """A 4xx answer of MLflow's app (or of FastAPI's routing) as one line in this project's words."""
    if status == 404:
        return f"{request.url.path}: no such endpoint ({ROUTES})"
    if status == 405:
        return f"{request.method} {request.url.path} is not allowed ({ROUTES})"
    try:
        payload = json.loads(raw)
        text = str(payload.get("message") or payload.get("detail") or payload)
    except (ValueError, AttributeError):
        text = raw.decode(errors="replace")
    return " ".join(_MLFLOW_PREFIX.sub("", text).split())[:500]


def request_problem(content_type: str | None, body: bytes) -> tuple[int, str] | None:
    """(status, message) for a POST to ``/invocations`` that MLflow would reject in its own words or
    with a 500; None when the request is well-formed (the model checks the texts themselves)."""
    if not content_type:
        return 415, f"missing Content-Type header: {SEND_JSON}"
    mime, *parameters = (part.strip() for part in content_type.split(";"))
    if mime.lower() not in CONTENT_TYPES:
        sent = "a form (what a plain curl -d sends)" if mime == "application/x-www-form-urlencoded" else mime
        return 415, f"Content-Type {sent} is not accepted: {SEND_JSON} (text/csv with a text column also works)"
    for parameter in parameters:
        key, _, value = parameter.partition("=")
        if key.strip().lower() != "charset" or value.strip().lower() != "utf-8":  # MLflow's own rule
            return 415, f"Content-Type parameter {parameter!r} is not accepted: send UTF-8 (charset=utf-8 or none)"
    if mime.lower() == "text/csv":
        header = next(csv.reader(io.StringIO(body.decode("utf-8", errors="replace"))), [])
        if "text" not in [h.strip() for h in header]:
            return 400, f"the CSV has no text column (got columns: {', '.join(header[:10]) or 'none'})"
    if mime.lower() != "application/json":
        return None
    try:
        payload = json.loads(body)
    except json.JSONDecodeError as exc:
        return 400, f"the body is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); e.g. {EXAMPLE}"
    except UnicodeDecodeError:
        return 400, "the body is not UTF-8 text"
    try:
        texts = json_texts(payload)
    except ValueError as exc:
        return 400, str(exc)
    if not texts:
        return 400, f"no text to classify: send at least one, e.g. {EXAMPLE}"
    for i, v in enumerate(texts):
        if not isinstance(v, str):
            return 400, f"text {i} is not a string (got {type(v).__name__})"
    return None


def json_texts(payload: Any) -> list[object]:
    """The ``text`` values of a decoded JSON request in one of MLflow's formats; ValueError saying
    what is wrong with its shape."""
    if not isinstance(payload, dict):
        raise ValueError(f"the body must be a JSON object such as {EXAMPLE}, got {_kind(payload)}")
    keys = [k for k in INPUT_KEYS if k in payload]
    if len(keys) != 1:
        got = ", ".join(payload) or "none"
        raise ValueError(f"the body needs exactly one of {', '.join(INPUT_KEYS)} (got keys: {got}); e.g. {EXAMPLE}")
    key, data = keys[0], payload[keys[0]]
    if key == "dataframe_split":
        columns = data.get("columns") if isinstance(data, dict) else None
        if not isinstance(columns, list) or "text" not in columns:
            raise ValueError(f'dataframe_split needs "columns" with "text" (got {_kind(columns)})')
        col = columns.index("text")
        rows = data.get("data") or []
        if not isinstance(rows, list) or not all(isinstance(r, list) and len(r) > col for r in rows):
            raise ValueError('dataframe_split "data" must be a list of rows, one value per column')
        return [row[col] for row in rows]
    if isinstance(data, dict):
        if "text" not in data:
            raise ValueError(f"{key} has no field 'text' (got fields: {', '.join(map(str, data)) or 'none'})")
        return data["text"] if isinstance(data["text"], list) else [data["text"]]
    if not isinstance(data, list):
        raise ValueError(f'{key} must be {{"text": [...]}} or a list of records with a "text" field, got {_kind(data)}')
    if key == "dataframe_records" or any(isinstance(r, dict) for r in data):
        missing = [i for i, r in enumerate(data) if not isinstance(r, dict) or "text" not in r]
        if missing:
            raise ValueError(f"{key}: record {missing[0]} has no field 'text'")
        return [r["text"] for r in data]
    return list(data)


def _kind(value: object) -> str:
    names = {list: "a list", str: "a string", dict: "an object", type(None): "nothing"}
    return names.get(type(value), f"a {type(value).__name__}")


def serve(
    served: ServedModel,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    *,
    follower: AliasFollower | None = None,
    prediction_log: PredictionLog | None = None,
) -> None:
    """Serve until interrupted (SIGINT/SIGTERM: requests in flight finish, then the log is flushed).
    With a ``follower`` the served version follows its alias; without, it is the one given."""
    import uvicorn

    if follower is not None:
        follower.start()
    try:
        uvicorn.run(build_app(served), host=host, port=port, workers=1, log_level="info")
    finally:
        if follower is not None:
            follower.stop()
        if prediction_log is not None:
            prediction_log.close()


def cache_folder(root: Path | str) -> Path:
    """Where ``serve-model`` keeps fetched versions (shared with the batch flow)."""
    return Path(root) / ".intent-mlops" / "models"
