"""The deployments of ``prefect.yaml``, served on this machine (``intent-mlops serve``).

``prefect.yaml`` is the one declaration: ``prefect deploy --all`` sends it to a work pool, and
this module turns the same entries into ``flow.to_deployment`` objects for ``prefect.serve``
(schedules, concurrency limits and all), so the local and the team setups cannot drift. The
schedules come from ``params.yaml`` (:data:`CRON_SETTINGS`: retrain ``schedule.cron``, monitor
``monitoring.cron``; both in ``schedule.timezone``); ``prefect.yaml`` repeats them for
``prefect deploy`` and a test keeps the two equal.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import yaml

from intent_mlops.config.params import Config, load_config

DECLARATIONS = "prefect.yaml"
CRON_SETTINGS = {"monitor": "monitoring.cron"}
"""The params.yaml setting of a scheduled deployment's cron; any other: ``schedule.cron``."""


def cron_of(cfg: Config, deployment: str) -> str:
    """The cron expression params.yaml gives the scheduled deployment ``deployment``."""
    section, key = CRON_SETTINGS.get(deployment, "schedule.cron").split(".")
    return str(getattr(getattr(cfg, section), key))


def declarations(root: Path) -> list[dict[str, Any]]:
    """The ``deployments:`` entries of the project's ``prefect.yaml`` (else the one beside this code:
    a data project made with ``data import`` in another folder uses the code's declarations)."""
    path = root / DECLARATIONS
    if not path.exists():
        path = Path(__file__).resolve().parents[1] / DECLARATIONS
    raw = yaml.safe_load(path.read_text()) or {}
    return list(raw.get("deployments") or [])


def load_flow(entrypoint: str) -> Any:
    """``flows/retraining.py:retrain_flow`` -> the flow object (imported as a module of this package)."""
    path, name = entrypoint.split(":")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    return getattr(module, name)


def local_timezone() -> str:
    """IANA name of this machine's zone (a schedule 'at 03:00' means local time here)."""
    import tzlocal

    return str(tzlocal.get_localzone_name() or "UTC")


def build(root: Path) -> list[Any]:
    """RunnerDeployments for ``prefect.serve``: same names, schedules and limits as ``prefect.yaml``."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.schedules import Cron

    cfg = load_config(root / "params.yaml")
    zone = cfg.schedule.timezone or local_timezone()
    out = []
    for entry in declarations(root):
        limit = entry.get("concurrency_limit")
        concurrency = None
        if limit:
            strategy = ConcurrencyLimitStrategy(limit.get("collision_strategy", "ENQUEUE"))
            concurrency = ConcurrencyLimitConfig(limit=int(limit["limit"]), collision_strategy=strategy)
        schedules = [Cron(cron_of(cfg, entry["name"]), timezone=zone) for _ in entry.get("schedules") or []]
        out.append(
            load_flow(entry["entrypoint"]).to_deployment(
                name=entry["name"],
                description=entry.get("description"),
                tags=entry.get("tags") or [],
                parameters={**(entry.get("parameters") or {}), "project_dir": str(root)},
                schedules=schedules or None,
                concurrency_limit=concurrency,
            )
        )
    return out


def serve(root: Path) -> int:
    """Serve every deployment from this process until interrupted (runs start as subprocesses)."""
    from prefect import serve as prefect_serve

    deployments = build(root)
    names = ", ".join(d.name for d in deployments)
    print(f"serving {names} for {root} (Ctrl-C stops)")
    prefect_serve(*deployments, print_starting_message=True)
    return 0
