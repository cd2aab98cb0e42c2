"""The scheduled champion/challenger flow: new data -> train a challenger -> decide -> promote or not.

The decision history for this data version and these params decides first (one rule, see
:func:`intent_mlops.registry.champion.prior_decision`): skip with the reason, decide an undecided
version again, or train: the training flow as a subflow, whose last step is the decision shared
with ``intent-mlops train`` and ``intent-mlops decide``. Only composition of ``tasks/`` and flows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.states import Completed

from flows.parameters import DataRev, Force, Overrides, ProjectDir, RequireApproval, Significance, as_overrides
from flows.promotion import decide_version, print_decided_again
from flows.training import train_flow
from intent_mlops.config.environment import apply_defaults
from intent_mlops.config.params import load_run_config
from intent_mlops.registry.champion import UNDECIDED
from tasks.data import prepare_splits, pull_data
from tasks.promotion import prior_decision, read_champion

SKIPPED = "skipped"
"""How a skip's Completed state message starts; the rest says why (``champion.prior_decision``)."""
HINT = "intent-mlops retrain --force trains anyway; intent-mlops decide --version N decides a version again"


@flow(name="retrain-intent-classifier", log_prints=True, validate_parameters=True)
def retrain_flow(
    data_rev: DataRev = None,
    force: Force = False,
    overrides: Overrides = None,
    project_dir: ProjectDir = ".",
    significance_test: Significance = None,
    require_approval: RequireApproval = None,
) -> Any:
    """Retrain on new data and promote the challenger only if it is really better than the champion.

    Unless ``force``, the decision history for this data and these params decides first: skips
    (Completed, "skipped: <why>") when the champion was trained on them, a version trained on them was
    rolled back from, or was refused against this champion (no champion: by the floor); an undecided
    version (approval timed out) is decided again without retraining.

    Args:
        data_rev: Git revision whose data.dvc to train on (branch, tag or commit); empty: the workspace.
        force: Train even when the decision history says a retrain would repeat itself.
        overrides: Other params.yaml values as section.key=value, e.g. train.epochs=5.
        project_dir: Project folder (params.yaml, data.dvc) on the machine that runs the flow.
        significance_test: promotion.significance_test, paired bootstrap or McNemar; empty: params.yaml.
        require_approval: promotion.require_approval, pause for a person to approve; empty: params.yaml.
    """
    overrides = as_overrides(overrides, significance_test=significance_test, require_approval=require_approval)
    root = str(Path(project_dir).resolve())
    apply_defaults(root)
    cfg = load_run_config(root, overrides)
    version = pull_data(root, data_rev)
    params_md5 = cfg.md5()
    champion = read_champion(cfg, root)
    prior = None if force else prior_decision(cfg.mlflow.registered_model, version.data_md5, params_md5, champion)
    if prior is None:
        return train_flow(data_rev=data_rev, overrides=overrides, project_dir=root)
    if prior.rule == UNDECIDED:
        return decide_version(cfg, root, prior.version, prepare_splits(version))
    message = f"{SKIPPED}: {prior.message}"
    text = (
        f"# Retrain {message}\n\nData `{version.data_md5}` (`{version.rev}`), params `{params_md5}`. "
        f"Nothing was trained. {HINT}.\n"
    )
    create_markdown_artifact(key="retrain-skipped", markdown=text, description=message[:200])
    result = {
        "skipped": True, "rule": prior.rule, "decided": prior.version, "reason": prior.message,
        "champion": champion.version if champion else None, "data_md5": version.data_md5,
    }  # fmt: skip
    return Completed(message=message, data=result)


def run_retraining(root: Path, data_rev: str | None, force: bool, overrides: list[str]) -> int:
    """``intent-mlops retrain``: run the flow and print the decision (or why it skipped)."""
    from flows.training import print_outcome

    state = retrain_flow(data_rev=data_rev, force=force, overrides=overrides, project_dir=str(root), return_state=True)
    out = state.result()
    if isinstance(out, dict) and out.get("skipped"):
        print(f"{SKIPPED}: {out['reason']}")
        print(f"({HINT})")
        return 0
    if isinstance(out, dict) and out.get("decided_again"):
        print_decided_again(out)
        return 0
    print_outcome(root, out)
    return 0
