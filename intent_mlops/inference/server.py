"""The online endpoint behind ``intent-mlops serve-model``: MLflow's own scoring app for one version.

It is exactly what ``mlflow models serve -m models:/intent-classifier/N`` runs (same routes:
``/ping``, ``/health``, ``/version``, ``/invocations``; same request formats), plus one guard: a POST
without a ``Content-Type`` gets a 415 with a message. MLflow 3's scoring app raises on it instead
(``content_type.split`` on None: a 500 that hides behind the client's mistake). Bad requests inside a
well-formed call are the model's own 400s (:mod:`.pyfunc`); server faults stay 500s.
"""

from __future__ import annotations

import os
from typing import Any

from intent_mlops.inference.pyfunc import MODEL_VERSION_ENV
from intent_mlops.inference.registered import ModelRef

DEFAULT_PORT = 5001  # beside the MLflow UI's 5000 (CONVENTIONS.md)


def build_app(model: Any) -> Any:
    """The FastAPI app serving a loaded pyfunc ``model``."""
    from fastapi import Request
    from fastapi.responses import JSONResponse
    from mlflow.pyfunc import scoring_server

    app = scoring_server.init(model)

    @app.middleware("http")
    async def require_content_type(request: Request, call_next: Any) -> Any:
        if request.method == "POST" and not request.headers.get("content-type"):
            return JSONResponse(
                {"error_code": "BAD_REQUEST", "message": "missing Content-Type header: send application/json"},
                status_code=415,
            )
        if request.method == "POST" and request.headers["content-type"].startswith("application/json"):
            problem = non_string_text(await request.body())
            if problem:
                return JSONResponse({"error_code": "INVALID_PARAMETER_VALUE", "message": problem}, status_code=400)
        return await call_next(request)

    return app


def non_string_text(body: bytes) -> str | None:
    """What is wrong when a JSON request's ``text`` values are not all strings (None: nothing, or not
    JSON at all, which MLflow itself answers with a 400)."""
    import json

    try:
        payload = json.loads(body)
    except ValueError:
        return None
    if not isinstance(payload, dict):
        return None
    values: list[object] = []
    inputs = payload.get("inputs", payload.get("instances"))
    if isinstance(inputs, dict) and "text" in inputs:
        values = inputs["text"] if isinstance(inputs["text"], list) else [inputs["text"]]
    elif isinstance(inputs, list):
        values = [r.get("text") if isinstance(r, dict) else r for r in inputs]
    records = payload.get("dataframe_records")
    if isinstance(records, list):
        values += [r.get("text") for r in records if isinstance(r, dict) and "text" in r]
    split = payload.get("dataframe_split")
    if isinstance(split, dict) and isinstance(split.get("columns"), list) and "text" in split["columns"]:
        col = split["columns"].index("text")
        values += [row[col] for row in split.get("data") or [] if isinstance(row, list) and len(row) > col]
    for i, v in enumerate(values):
        if not isinstance(v, str):
            return f"text {i} is not a string (got {type(v).__name__})"
    return None


def serve(ref: ModelRef, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> None:
    """Serve the version until interrupted. Asked for by number, so the answer cannot change under a
    running server when the champion moves; every prediction carries ``<name>/<version>``."""
    import mlflow
    import uvicorn

    os.environ[MODEL_VERSION_ENV] = ref.label
    uvicorn.run(build_app(mlflow.pyfunc.load_model(ref.uri)), host=host, port=port, workers=1, log_level="info")
