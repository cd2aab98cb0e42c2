"""The scheduled champion/challenger flow: new data -> train a challenger -> decide -> promote or not.

Skips at once (Completed, "skipped: no new data") when the champion was trained on exactly this
data version and these params, or a version trained on them was already refused against this
champion; otherwise it is the training flow as a subflow, whose last step is
the decision shared with ``intent-mlops train``. Only composition of ``tasks/`` and flows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.states import Completed

from flows.parameters import DataRev, Force, Overrides, ProjectDir, RequireApproval, Significance, as_overrides
from flows.training import train_flow
from intent_mlops.config.environment import apply_defaults
from intent_mlops.config.params import load_run_config
from tasks.data import pull_data
from tasks.promotion import read_champion, refused_before

SKIPPED = "skipped: no new data"


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

    Skips (Completed, "skipped: no new data") when the champion was trained on exactly this data
    version and these params, unless ``force``.

    Args:
        data_rev: Git revision whose data.dvc to train on (branch, tag or commit); empty: the workspace.
        force: Train even when the champion was trained on this data and these params.
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
    name, params_md5 = cfg.mlflow.registered_model, cfg.md5()
    champion = read_champion(cfg, root)
    if force or champion is None:
        return train_flow(data_rev=data_rev, overrides=overrides, project_dir=root)
    if (champion.data_md5, champion.params_md5) == (version.data_md5, params_md5):
        why = f"The champion (version {champion.version}) was trained on data `{version.data_md5}` with params"
        decided = champion.version
    else:
        # Same data and params already lost against this very champion: a retrain would decide the
        # same again (a daily schedule would register an identical refused version every night).
        refused = refused_before(name, version.data_md5, params_md5, champion.version)
        if refused is None:
            return train_flow(data_rev=data_rev, overrides=overrides, project_dir=root)
        why = (
            f"Version {refused} was trained on data `{version.data_md5}` and refused against the champion "
            f"(version {champion.version}), with params"
        )
        decided = refused
    text = (
        f"# Retrain {SKIPPED}\n\n{why} `{params_md5}`, and `{version.rev}` holds that data. "
        "Nothing was trained. Run with `force` to retrain anyway.\n"
    )
    create_markdown_artifact(key="retrain-skipped", markdown=text, description=SKIPPED)
    result = {"skipped": True, "champion": champion.version, "decided": decided, "data_md5": version.data_md5}
    return Completed(message=SKIPPED, data=result)


def run_retraining(root: Path, data_rev: str | None, force: bool, overrides: list[str]) -> int:
    """``intent-mlops retrain``: run the flow and print the decision (or the skip)."""
    from flows.training import print_outcome

    state = retrain_flow(data_rev=data_rev, force=force, overrides=overrides, project_dir=str(root), return_state=True)
    out = state.result()
    if isinstance(out, dict) and out.get("skipped"):
        data, champion, decided = out["data_md5"], out["champion"], out.get("decided", out["champion"])
        if decided == champion:
            print(f"{SKIPPED}: champion version {champion} was trained on data {data} with these params")
        else:
            print(
                f"{SKIPPED}: version {decided} was trained on data {data} with these params "
                f"and refused against champion version {champion}"
            )
        print("(intent-mlops retrain --force trains anyway)")
        return 0
    print_outcome(root, out)
    return 0
