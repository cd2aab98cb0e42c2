"""``intent-mlops serve-model``: compose the endpoint (core :mod:`intent_mlops.inference.server` and
:mod:`~intent_mlops.inference.follow`) with what needs Prefect: the ``intent-mlops.serving.swap-failed``
event and, when a Prefect server is configured, a subscription to the promoted / rolled-back events
that makes the endpoint look at its alias at once instead of at the next poll.

Events from another process only arrive through a running Prefect server (``PREFECT_API_URL``); in
ephemeral mode the poll every ``serving.follow_seconds`` is the only trigger, and it is enough.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import threading
from collections.abc import Callable
from pathlib import Path

from intent_mlops.config.params import load_run_config
from intent_mlops.config.redact import redact
from intent_mlops.inference.follow import AliasFollower, ServedModel, check_loaded, load_version
from intent_mlops.inference.registered import resolve
from intent_mlops.inference.server import cache_folder, serve
from intent_mlops.monitoring.log import PredictionLog
from intent_mlops.registry.models import aliases
from intent_mlops.registry.tracking import connect

log = logging.getLogger(__name__)

ALIAS_EVENTS = ["intent-mlops.model.promoted", "intent-mlops.model.rolled-back"]


def _api_url() -> str:
    from prefect.settings import PREFECT_API_URL

    return str(PREFECT_API_URL.value() or "")


def emit_swap_failed(name: str, version: str, why: str, serving: str) -> None:
    """``intent-mlops.serving.swap-failed`` (only with a Prefect server: nothing can subscribe to an ephemeral one)."""
    if not _api_url():
        return
    from prefect.events import emit_event

    emit_event(
        event="intent-mlops.serving.swap-failed",
        resource={"prefect.resource.id": f"mlflow.model-version.{name}.{version}",
                  "prefect.resource.name": f"{name} v{version}"},
        payload={"version": version, "reason": why, "serving": serving},
    )  # fmt: skip


def subscribe(nudge: Callable[[], None]) -> threading.Thread | None:
    """A daemon thread calling ``nudge`` on every promoted / rolled-back event (None without a server)."""
    if not _api_url():
        return None

    async def listen() -> None:
        from prefect.events.clients import get_events_subscriber
        from prefect.events.filters import EventFilter, EventNameFilter

        flt = EventFilter(event=EventNameFilter(name=ALIAS_EVENTS))
        async with get_events_subscriber(filter=flt, reconnection_attempts=1_000_000) as events:
            async for event in events:
                log.info("event %s: looking at the alias now", event.event)
                nudge()

    def run() -> None:
        try:
            asyncio.run(listen())
        except Exception as exc:  # the poll still follows the alias
            log.warning("no Prefect event subscription (%s); following by polling only", exc)

    thread = threading.Thread(target=run, name="alias-events", daemon=True)
    thread.start()
    return thread


def serve_model(args: argparse.Namespace, root: Path) -> int:
    """Resolve, load and check the version, then serve it; in alias mode (the default) follow the alias."""
    cfg = load_run_config(root)
    connect(cfg.mlflow, root)
    name = cfg.mlflow.registered_model
    ref = resolve(name, args.alias, args.model_version)
    cache = cache_folder(root)
    loaded = load_version(name, ref.version, cache)
    check_loaded(loaded)
    prediction_log = PredictionLog.open(root, cfg.monitoring)
    served = ServedModel(loaded, prediction_log)
    follower = None
    if ref.alias is not None:
        alias = ref.alias
        follower = AliasFollower(
            served,
            name,
            alias,
            interval=cfg.serving.follow_seconds,
            read_alias=lambda: aliases(name).get(alias),
            load=lambda version: load_version(name, version, cache),
            on_swap_failed=lambda version, why: emit_swap_failed(name, version, why, served.current.label),
        )
        subscribe(follower.nudge)
    url = f"http://{args.host}:{args.port}"
    mode = f"following {name}@{ref.alias} (checked every {cfg.serving.follow_seconds:g} s)" if follower else "pinned"
    where = "off (monitoring.log: false)" if prediction_log is None else redact(str(prediction_log.store))
    print(f"serving {ref.label} on {url}/invocations, {mode}; prediction log: {where} (Ctrl-C stops); try:")
    print(f"""  curl -s {url}/invocations -H 'Content-Type: application/json' """
          """-d '{"inputs": {"text": ["where is my order"]}}'""")  # fmt: skip
    serve(served, args.host, args.port, follower=follower, prediction_log=prediction_log)
    return 0
