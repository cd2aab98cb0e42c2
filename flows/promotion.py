"""The decision step of every training: compare with the champion, decide, (approve,) record, promote.

``train`` and ``retrain`` both end here (one path): the first version is crowned by the absolute
floor alone, later ones by the whole ``promotion.*`` policy. Only composition of ``tasks/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect.artifacts import create_markdown_artifact
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from prefect.runtime import flow_run
from pydantic import Field

from intent_mlops.config.params import Config
from intent_mlops.data.versioning import Splits
from intent_mlops.registry.models import RegisteredVersion
from intent_mlops.registry.promotion import Decision, reviewed
from tasks.promotion import (
    announce,
    compare_models,
    decide_promotion,
    mark_challenger,
    promote,
    read_champion,
    record_decision,
    recorded_decision,
)


class Approval(RunInput):
    """The form a reviewer fills in on the paused flow run's page in the Prefect UI."""

    approve: bool = Field(default=False, description="Promote this challenger to champion?")
    reviewer: str = Field(default="", description="Your name (recorded with the decision).")
    comment: str = Field(default="", description="Why (recorded with the decision).")


def await_approval(decision: Decision, timeout_seconds: int) -> Decision:
    """Pause for a person's answer in the Prefect UI; no answer within the timeout counts as refused."""
    description = decision.markdown() + "\n\nApprove or refuse below."
    try:
        answer = pause_flow_run(
            wait_for_input=Approval.with_initial_data(description=description), timeout=timeout_seconds
        )
    except Exception as exc:  # Prefect raises on timeout (FlowPauseTimeout) and when it cannot pause
        return reviewed(decision, False, "", f"no approval ({type(exc).__name__}: {exc})"[:300])
    return reviewed(decision, answer.approve, answer.reviewer, answer.comment)


def decide_and_promote(
    cfg: Config, root: str, registered: RegisteredVersion, model_dir: Path, splits: Splits, lineage: dict[str, str]
) -> dict[str, Any]:
    """Challenger alias, the comparison and policy (or a decision already recorded), record, then promote."""
    mark_challenger(registered)
    decision = recorded_decision(registered)
    champion = read_champion(registered.name)
    if decision is None:
        comparison = compare_models(cfg, root, model_dir, champion, splits)
        decision = decide_promotion(cfg, comparison, champion, registered)
        if decision.promoted and cfg.promotion.require_approval:
            decision = await_approval(decision, cfg.promotion.approval_timeout_seconds)
        extra = {"prefect.flow_run_id": str(flow_run.get_id() or ""), **lineage}
        record_decision(decision, registered, comparison, extra)
    outcome = promote(decision, registered, root)
    create_markdown_artifact(
        key="promotion-decision", markdown=decision.markdown(), description=f"{decision.decision}: {decision.reason}"
    )
    announce(decision, registered, bool(outcome["moved"]))
    return {"decision": decision.decision, "reason": decision.reason, **outcome}
