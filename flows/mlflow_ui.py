"""``mlflow server`` with the UI's telemetry notice off when telemetry is off.

``python -m flows.mlflow_ui server ARGS`` is MLflow's own ``server`` command (same options, same
store handling), serving MLflow's own app wrapped in one layer. Why: MLflow 3.17's UI shows the
notice "Information about UI telemetry" on its home page until the browser's ``localStorage``
holds ``mlflow.telemetry.info.alert.dismissed_v1`` (the alert reads nothing else), while
``MLFLOW_DISABLE_TELEMETRY`` only stops collection on the server (``/ajax-api/3.0/mlflow/ui-telemetry``
answers "disabled"). So when MLflow's own rule says telemetry is off, the UI page gets a script
that records the notice as dismissed and the UI's telemetry setting as off, before the UI starts.
"""

from __future__ import annotations

import json
import sys
from typing import Any

MLFLOW_APP = "mlflow.server.fastapi_app:app"
WRAPPED_APP = "flows.mlflow_ui:app"
UI_STORAGE = {
    "mlflow.telemetry.info.alert.dismissed_v1": "true",  # the notice, as if closed (key _v version 1)
    "mlflow.settings.telemetry.enabled_v1": "false",  # the UI's own telemetry setting
}
"""The UI's ``localStorage`` entries (``<key>_v<version>`` = JSON value, as its useLocalStorage hook writes them)."""
SCRIPT = (
    "<script>try{"
    + "".join(f"localStorage.setItem({json.dumps(k)},{json.dumps(v)});" for k, v in UI_STORAGE.items())
    + "}catch(e){}</script>"
).encode()


def telemetry_disabled() -> bool:
    """MLflow's own rule (``MLFLOW_DISABLE_TELEMETRY``, ``DO_NOT_TRACK``, CI)."""
    from mlflow.telemetry.utils import is_telemetry_disabled

    return bool(is_telemetry_disabled())


class TelemetryNoticeOff:
    """ASGI wrapper: HTML pages of ``app`` get :data:`SCRIPT` first thing in ``<head>`` when telemetry is
    off; everything else passes through untouched (and unbuffered)."""

    def __init__(self, app: Any, disabled: bool) -> None:
        self.app, self.disabled = app, disabled

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if not self.disabled or scope["type"] != "http" or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        start: dict[str, Any] = {}
        body: list[bytes] = []

        async def inject(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers") or [])
                if not headers.get(b"content-type", b"").startswith(b"text/html"):
                    start["passthrough"] = True
                    await send(message)
                else:
                    start.update(message)
                return
            if start.get("passthrough") or message["type"] != "http.response.body":
                await send(message)
                return
            body.append(message.get("body", b""))
            if message.get("more_body"):
                return
            page = b"".join(body).replace(b"<head>", b"<head>" + SCRIPT, 1)
            headers = [(k, v) for k, v in start.get("headers") or [] if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(page)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": page})

        await self.app(scope, receive, inject)


def __getattr__(name: str) -> Any:
    """``app``: MLflow's server app, wrapped (built when the server process imports it, not before)."""
    if name != "app":
        raise AttributeError(name)
    from mlflow.server.fastapi_app import app

    return TelemetryNoticeOff(app, telemetry_disabled())


def main(argv: list[str]) -> None:
    """Run MLflow's ``server`` command, which starts uvicorn on :data:`WRAPPED_APP` instead of MLflow's."""
    import mlflow.server
    from mlflow.cli import cli

    build = mlflow.server._build_uvicorn_command  # the one place MLflow names the app it serves

    def serve_wrapped(
        uvicorn_opts: Any, host: Any, port: Any, workers: Any, app_name: str, *args: Any, **kw: Any
    ) -> Any:
        return build(
            uvicorn_opts, host, port, workers, WRAPPED_APP if app_name == MLFLOW_APP else app_name, *args, **kw
        )

    mlflow.server._build_uvicorn_command = serve_wrapped
    cli(args=argv, prog_name="mlflow")  # click exits with the command's status


if __name__ == "__main__":
    main(sys.argv[1:])
