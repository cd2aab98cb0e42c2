"""The decision step of every training: compare with the champion, decide, (approve,) record, promote.

``train`` and ``retrain`` both end here (one path): the first version is crowned by the absolute
floor alone, later ones by the whole ``promotion.*`` policy. ``intent-mlops decide`` (and ``retrain``
for an undecided version) runs the same step again for an existing version, without training.
Only composition of ``tasks/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from prefect.runtime import flow_run
from pydantic import Field

from flows.parameters import DataRev, Overrides, ProjectDir, as_overrides
from intent_mlops.config.environment import apply_defaults
from intent_mlops.config.params import Config, load_run_config
from intent_mlops.data.versioning import Splits
from intent_mlops.registry.models import RegisteredVersion
from intent_mlops.registry.promotion import Decision, headline, needs_approval, reviewed
from tasks.card import model_card
from tasks.data import prepare_splits, pull_data
from tasks.promotion import (
    announce,
    archive_decision,
    compare_models,
    decide_promotion,
    fetch_version,
    mark_challenger,
    promote,
    read_champion,
    record_decision,
    recorded_decision,
    rolled_back,
)
from tasks.training import read_aliases


class Approval(RunInput):
    """The form a reviewer fills in on the paused flow run's page in the Prefect UI."""

    approve: bool = Field(default=False, description="Promote this challenger to champion?")
    reviewer: str = Field(default="", description="Your name (recorded with the decision).")
    comment: str = Field(default="", description="Why (recorded with the decision).")


APPROVAL_POLL_SECONDS = 5


def await_approval(decision: Decision, timeout_seconds: int) -> tuple[Decision, dict[str, str]]:
    """Pause for a person's answer in the Prefect UI; no answer (timeout, a pause that failed) leaves
    the version ``undecided``: not a refusal, the next run decides it again without retraining.

    ``pause_flow_run`` blocks this process (no deployment needed) and polls the flow run's state;
    the form's answer comes back when someone resumes the run with input (UI or API). Returns the
    reviewed decision and the review as ``promotion.*`` tags for the record.
    """
    description = decision.markdown() + "\n\nApprove or refuse below."
    try:
        answer = pause_flow_run(
            wait_for_input=Approval.with_initial_data(description=description),
            timeout=timeout_seconds,
            poll_interval=APPROVAL_POLL_SECONDS,
        )
    except Exception as exc:  # Prefect raises on timeout (FlowPauseTimeout), when it cannot pause, on no input
        _run_again()
        timed_out = isinstance(exc, FlowPauseTimeout)
        note = f"no approval within {timeout_seconds} s" if timed_out else f"no approval ({type(exc).__name__}: {exc})"
        review = {"promotion.review": "timeout" if timed_out else "no-answer", "promotion.reviewer": ""}
        return reviewed(decision, None, "", note[:300]), review
    review = {
        "promotion.review": "approved" if answer.approve else "refused",
        "promotion.reviewer": answer.reviewer[:200],
        "promotion.review_comment": answer.comment[:500],
    }
    return reviewed(decision, answer.approve, answer.reviewer, answer.comment), review


def _run_again() -> None:
    """After a pause that timed out, the server still holds the run as Paused (or, once its pause
    expiry service ran, Failed), and refuses to start any task of a run that is not Running: the
    refusal could not be recorded and the run could not finish. Put the run back to Running."""
    from uuid import UUID

    from prefect import get_client
    from prefect.states import Running

    if not flow_run.get_id():
        return
    run_id = UUID(str(flow_run.get_id()))
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(run_id).state
        if state is None or not state.is_running():
            client.set_flow_run_state(run_id, Running(message="no approval: undecided"), force=True)


def decide_and_promote(
    cfg: Config,
    root: str,
    registered: RegisteredVersion,
    model_dir: Path,
    splits: Splits,
    lineage: dict[str, str],
    again: bool = False,
) -> dict[str, Any]:
    """Challenger alias, the comparison and policy (or a decision already recorded, unless ``again``),
    record, then promote."""
    mark_challenger(registered)
    decision = None if again else recorded_decision(registered)
    champion = read_champion(cfg, root)
    if decision is None:
        comparison = compare_models(cfg, root, model_dir, champion, splits, registered.run_id)
        decision = decide_promotion(cfg, comparison, champion, registered)
        review: dict[str, str] = {}
        if needs_approval(decision, cfg.promotion):
            decision, review = await_approval(decision, cfg.promotion.approval_timeout_seconds)
        extra = {"prefect.flow_run_id": str(flow_run.get_id() or ""), **lineage, **review}
        if again:
            archive_decision(registered)
        record_decision(decision, registered, comparison, extra)
    outcome = promote(decision, registered, root)
    if decision.promoted and not outcome["moved"]:  # the champion moved meanwhile: the record now says refused
        decision = recorded_decision(registered) or decision
    create_markdown_artifact(
        key="promotion-decision", markdown=decision.markdown(), description=headline(decision.decision, decision.reason)
    )
    announce(decision, registered, bool(outcome["moved"]))
    return {"decision": decision.decision, "reason": decision.reason, **outcome}


def decide_version(cfg: Config, root: str, number: str, splits: Splits) -> dict[str, Any]:
    """Decide an existing version again against the current champion under the current ``promotion.*``
    policy, on ``splits``' dev rows, without retraining: ``intent-mlops decide --version N`` and the
    retrain flow for an undecided version. Recorded like any decision (the earlier record is kept)."""
    from flows.cli import UserError

    champion = read_champion(cfg, root)
    if champion is not None and champion.version == number:
        raise UserError(f"version {number} is the champion: there is nothing to decide against")
    back = rolled_back(cfg.mlflow.registered_model, number)
    if back is not None:  # a person's rollback holds; crowning it again is a person's move too
        raise UserError(
            f"version {number} was rolled back from by {back['by'] or 'someone'} at {back['at']}: {back['reason']}; "
            f"`intent-mlops rollback --to {number}` crowns it again"
        )
    registered, model_dir, lineage = fetch_version(cfg, root, number)
    decision = decide_and_promote(cfg, root, registered, model_dir, splits, lineage, again=True)
    model_card(cfg, registered, splits, str(flow_run.get_id() or ""))
    return {"version": number, "decided_again": True, "decision": decision, "aliases": read_aliases(registered.name)}


@flow(name="decide-intent-classifier", log_prints=True, validate_parameters=True)
def decide_flow(
    version: str, data_rev: DataRev = None, overrides: Overrides = None, project_dir: ProjectDir = "."
) -> dict[str, Any]:
    """Decide an existing model version again, without retraining (``intent-mlops decide --version N``).

    Args:
        version: The registered model version to decide.
        data_rev: Git revision whose data.dvc gives the dev split; empty: the workspace.
        overrides: Other params.yaml values as section.key=value, e.g. promotion.min_delta=0.005.
        project_dir: Project folder (params.yaml, data.dvc) on the machine that runs the flow.
    """
    root = str(Path(project_dir).resolve())
    apply_defaults(root)
    cfg = load_run_config(root, as_overrides(overrides))
    splits = prepare_splits(pull_data(root, data_rev))
    return decide_version(cfg, root, str(version), splits)


def run_decide(root: Path, version: str, data_rev: str | None, overrides: list[str]) -> int:
    """``intent-mlops decide --version N``: run the flow and print the decision."""
    out = decide_flow(version=version, data_rev=data_rev, overrides=overrides, project_dir=str(root))
    print_decided_again(out)
    return 0


def print_decided_again(out: dict[str, Any]) -> None:
    """The console lines of a decision taken again without training."""
    print(f"decided version {out['version']} again: {headline(out['decision']['decision'], out['decision']['reason'])}")
    champion = out["aliases"].get("champion")
    print(f"champion is version {champion}" if champion else "there is no champion yet")


def announce_rollback(name: str, tags: dict[str, str]) -> bool:
    """The ``intent-mlops.model.rolled-back`` Prefect event of ``intent-mlops rollback``, for automations.

    Best effort, and only when a Prefect API is configured: starting an ephemeral server would delay
    an urgent rollback, and nothing can subscribe to one. The MLflow record, written before, is the
    audit trail. Returns whether the event was handed to Prefect.
    """
    try:
        from prefect.events import emit_event
        from prefect.settings import PREFECT_API_URL

        if not PREFECT_API_URL.value():
            return False
        target = tags["promotion.challenger_version"]
        emit_event(
            event="intent-mlops.model.rolled-back",
            resource={
                "prefect.resource.id": f"mlflow.model-version.{name}.{target}",
                "prefect.resource.name": f"{name} v{target}",
            },
            payload={
                "decision": "rollback", "from_version": tags["promotion.champion_version"], "to_version": target,
                "reason": tags["promotion.reason"], "by": tags.get("promotion.by", ""),
            },
        )  # fmt: skip
    except Exception:  # a notification only: the rollback itself is done and recorded
        return False
    return True
