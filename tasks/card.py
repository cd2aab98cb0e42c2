"""Prefect task for the model card on the registry page (I/O against the registry: retried)."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from intent_mlops.config.params import Config
from intent_mlops.data.io import read_csv
from intent_mlops.data.split import SplitPaths
from intent_mlops.data.versioning import Splits
from intent_mlops.registry.card import write_card
from intent_mlops.registry.models import RegisteredVersion


def flow_run_url(flow_run_id: str) -> str:
    """The flow run's page in the Prefect UI, when a UI URL is known (a server; not ephemeral mode)."""
    from prefect.settings import PREFECT_UI_URL

    base = PREFECT_UI_URL.value()
    return f"{base}/runs/flow-run/{flow_run_id}" if base and flow_run_id else ""


@task(name="write-model-card", retries=2, retry_delay_seconds=3, cache_policy=NO_CACHE)
def model_card(cfg: Config, version: RegisteredVersion, splits: Splits, flow_run_id: str) -> None:
    paths = SplitPaths.under(splits.folder).as_dict()
    rows = {name: len(read_csv(path)) for name, path in paths.items()}
    write_card(version.name, version.version, cfg, rows, flow_run_url(flow_run_id))
