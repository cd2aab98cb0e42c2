"""Prefect tasks for the champion/challenger decision: compare, decide, approve, promote, record.

Registry reads and writes retry (I/O); the comparison does not (it is compute). The decision is
recorded in MLflow before any alias moves, and a rerun applies a recorded decision instead of
deciding again, so a crash anywhere leaves the champion either unchanged or moved exactly once.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from intent_mlops.config.params import Config
from intent_mlops.data.io import read_csv
from intent_mlops.data.lineage import text_hashes
from intent_mlops.data.split import SplitPaths
from intent_mlops.data.versioning import Splits
from intent_mlops.evaluation.compare import Comparison, compare
from intent_mlops.faults import failpoint
from intent_mlops.registry import champion as champ
from intent_mlops.registry.models import CHALLENGER, RegisteredVersion
from intent_mlops.registry.promotion import Decision, decide, decision_from_dict
from intent_mlops.registry.tracking import connect, log_text

PROMOTION_LIMIT = "intent-mlops-promotion"


@task(name="read-champion", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def read_champion(cfg: Config, root: str) -> champ.Champion | None:
    """The champion in the project's tracking store (connects first: the retrain flow reads it
    before any run is opened, and MLflow's process default is another store)."""
    connect(cfg.mlflow, root)
    return champ.current_champion(cfg.mlflow.registered_model)


@task(name="prior-decision", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def prior_decision(name: str, data_md5: str, params_md5: str, champion: champ.Champion | None) -> champ.Prior | None:
    """What the decision history says about retraining on this data and params (the skip rule)."""
    return champ.prior_decision(name, data_md5, params_md5, champion)


@task(name="fetch-version", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def fetch_version(cfg: Config, root: str, number: str) -> tuple[RegisteredVersion, Path, dict[str, str]]:
    """An existing version to decide again: its registry entry, its model folder and its lineage tags."""
    import mlflow

    connect(cfg.mlflow, root)
    name = cfg.mlflow.registered_model
    mv = mlflow.MlflowClient().get_model_version(name, number)
    model_dir = champ.fetch_model(name, number, Path(root) / ".intent-mlops" / "models")
    tags = dict(mv.tags or {})
    lineage = {k: tags[k] for k in ("data.md5", "data.rev", "params.md5", "splits.md5", "git.commit") if k in tags}
    return RegisteredVersion(name, number, str(mv.run_id), f"models:/{name}/{number}"), model_dir, lineage


@task(name="rolled-back", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def rolled_back(name: str, number: str) -> dict[str, str] | None:
    """Who rolled back from this version, when and why (None: nobody since it was last crowned)."""
    return champ.rolled_back(name, number)


@task(name="archive-decision", retries=2, retry_delay_seconds=3, cache_policy=NO_CACHE)
def archive_decision(version: RegisteredVersion) -> str | None:
    """Keep the version's earlier record (refused, undecided) as a run of its own before the new one replaces it."""
    return champ.archive_decision(version.name, version.version)


@task(name="log-train-set", retries=2, retry_delay_seconds=3, cache_policy=NO_CACHE)
def log_train_set(splits: Splits, run_id: str) -> int:
    """Hashes of the train split's texts on the run: a later comparison excludes what this model saw."""
    hashes = text_hashes(read_csv(SplitPaths.under(splits.folder).train)["text"])
    champ.log_train_hashes(run_id, hashes)
    return len(hashes)


@task(name="mark-challenger", retries=2, retry_delay_seconds=3, cache_policy=NO_CACHE)
def mark_challenger(version: RegisteredVersion) -> None:
    champ.set_alias(version.name, CHALLENGER, version.version)
    failpoint("after-challenger")


@task(name="compare-with-champion", retries=0, cache_policy=NO_CACHE)
def compare_models(
    cfg: Config,
    root: str,
    challenger_dir: Path,
    champion: champ.Champion | None,
    splits: Splits,
    challenger_run_id: str | None = None,
) -> Comparison:
    """Both models predict the same current dev rows, minus the rows either model trained on.

    The challenger's own record matters when an existing version is decided again on other data
    (``intent-mlops decide --data-rev``): its training rows may now sit in the dev split. For a version
    just trained it excludes nothing (its train and dev splits are disjoint). An unreadable lineage
    fails this step (``LineageUnreadable``, after retries) before anything is compared: nothing is
    decided, recorded or promoted, and a rerun tries again.
    """
    champion_dir, seen = None, None
    if champion is not None:
        seen = champ.train_hashes(champion.run_id)  # first: an unreadable lineage stops before the download
    if challenger_run_id is not None:
        seen = (seen or set()) | (champ.train_hashes(challenger_run_id) or set())
    if champion is not None:
        cache = Path(root) / ".intent-mlops" / "models"
        champion_dir = champ.fetch_model(cfg.mlflow.registered_model, champion.version, cache)
    dev = read_csv(SplitPaths.under(splits.folder).dev)
    result = compare(challenger_dir, champion_dir, dev, seen, cfg.train)
    get_run_logger().info(
        "compared on %d dev rows (%d excluded: a model trained on them)", len(result.lines), result.excluded_rows
    )
    return result


@task(name="decide-promotion", retries=0, cache_policy=NO_CACHE)
def decide_promotion(
    cfg: Config, comparison: Comparison, champion: champ.Champion | None, version: RegisteredVersion
) -> Decision:
    """The policy of ``promotion.*`` (a recorded decision is applied by the caller instead, see
    :func:`recorded_decision`; ``intent-mlops decide`` decides a recorded one again)."""
    decision = decide(
        comparison.y_true, comparison.champion, comparison.challenger, cfg.promotion,
        champion_version=champion.version if champion else None, challenger_version=version.version,
        excluded_rows=comparison.excluded_rows, champion_labels=comparison.champion_labels,
        challenger_labels=comparison.challenger_labels,
    )  # fmt: skip
    get_run_logger().info("decision: %s (%s)", decision.decision, decision.reason)
    return decision


@task(name="record-decision", retries=2, retry_delay_seconds=3, cache_policy=NO_CACHE)
def record_decision(
    decision: Decision, version: RegisteredVersion, comparison: Comparison, extra: dict[str, str]
) -> dict[str, str]:
    """Tags, JSON + markdown report and predictions on the run, description on the version."""
    log_text(version.run_id, comparison.predictions_csv(), "promotion/dev_predictions.csv")
    tags = champ.record_decision(version.name, version.run_id, decision, extra)
    failpoint("after-record")
    return tags


@contextlib.contextmanager
def promotion_lock(root: str | Path) -> Iterator[None]:
    """Every move of ``champion`` (promotion, ``intent-mlops rollback``): a file lock on this machine;
    with a Prefect server also a global concurrency limit of 1, so workers on other machines take turns too.
    A plain context manager, not a task: the CLI's rollback takes it outside any flow."""
    with champ.promotion_lock(Path(root) / ".intent-mlops" / "promotion.lock"):
        if not os.environ.get("PREFECT_API_URL"):  # not .value(): inside a flow that is the ephemeral server
            yield
            return
        from prefect.concurrency.sync import concurrency

        _ensure_limit()
        with concurrency(PROMOTION_LIMIT, occupy=1, strict=True, timeout_seconds=600):
            yield


def _ensure_limit() -> None:
    from prefect import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists

    with get_client(sync_client=True) as client, contextlib.suppress(ObjectAlreadyExists):
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=PROMOTION_LIMIT, limit=1))


@task(name="promote", retries=2, retry_delay_seconds=3, cache_policy=NO_CACHE)
def promote(decision: Decision, version: RegisteredVersion, root: str) -> dict[str, Any]:
    """Move ``champion`` if the decision says so and the champion is still the one compared against."""
    if not decision.promoted:
        return {"moved": False, "champion": champ.aliases(version.name).get(champ.CHAMPION)}
    with promotion_lock(root):
        moved, now = champ.move_champion(version.name, version.version, decision.champion_version)
    failpoint("after-promote")
    if not moved:
        back = champ.rolled_back(version.name, version.version)
        if back is not None:  # a crash rerun applying a promotion recorded before a rollback: the rollback wins
            get_run_logger().warning(
                "v%s was rolled back from by %s at %s since its promotion was recorded: not promoted",
                version.version, back["by"], back["at"],
            )  # fmt: skip
        else:
            message = "champion moved to v%s while v%s was evaluated: not promoted"
            get_run_logger().warning(message, now, version.version)
    return {"moved": moved, "champion": now}


@task(name="recorded-decision", retries=2, retry_delay_seconds=3, cache_policy=NO_CACHE)
def recorded_decision(version: RegisteredVersion) -> Decision | None:
    """The decision a crashed earlier attempt already recorded for this version, if any (None also
    for ``undecided``); an unreadable record fails after the retries instead of counting as none."""
    raw = champ.recorded_decision(version.name, version.version)
    return None if raw is None else decision_from_dict(raw)


@task(name="announce-decision", retries=0, cache_policy=NO_CACHE)
def announce(decision: Decision, version: RegisteredVersion, moved: bool) -> None:
    """A Prefect event for automations (notifications, deploy hooks). Best effort: Prefect's
    ``emit_event`` swallows most errors, so the MLflow record, written before, is the audit trail."""
    from prefect.events import emit_event

    if decision.decision not in ("promoted", "refused"):  # undecided: the next run decides (no event of its own)
        return
    kind = "refused" if decision.promoted and not moved else decision.decision
    emit_event(
        event=f"intent-mlops.model.{kind}",
        resource={
            "prefect.resource.id": f"mlflow.model-version.{version.name}.{version.version}",
            "prefect.resource.name": f"{version.name} v{version.version}",
            "mlflow.run_id": version.run_id,
        },
        payload={
            "decision": kind, "reason": decision.reason, "champion_version": decision.champion_version,
            "challenger_version": decision.challenger_version, "gain": decision.gain, "ci_low": decision.ci_low,
            "challenger_macro_f1": decision.challenger_macro_f1, "champion_macro_f1": decision.champion_macro_f1,
        },
    )  # fmt: skip
