"""The scheduled champion/challenger flow: new data -> train a challenger -> decide -> promote or not.

Skips at once (Completed, "skipped: no new data") when the champion was trained on exactly this
data version and these params; otherwise it is the training flow as a subflow, whose last step is
the decision shared with ``intent-mlops train``. Only composition of ``tasks/`` and flows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.states import Completed

from flows.training import train_flow
from intent_mlops.config.environment import apply_defaults
from intent_mlops.config.params import load_run_config
from tasks.data import pull_data
from tasks.promotion import read_champion

SKIPPED = "skipped: no new data"


@flow(name="retrain-intent-classifier", log_prints=True)
def retrain_flow(
    data_rev: str | None = None, force: bool = False, overrides: list[str] | None = None, project_dir: str = "."
) -> Any:
    """Retrain on the data of ``data_rev`` (default: the workspace) unless the champion already has it.

    ``force`` trains even when data and params are the champion's.
    """
    root = str(Path(project_dir).resolve())
    apply_defaults(root)
    cfg = load_run_config(root, overrides)
    version = pull_data(root, data_rev)
    champion = read_champion(cfg.mlflow.registered_model)
    if not force and champion and (champion.data_md5, champion.params_md5) == (version.data_md5, cfg.md5()):
        text = (
            f"# Retrain {SKIPPED}\n\nThe champion (version {champion.version}) was trained on data "
            f"`{version.data_md5}` with params `{cfg.md5()}`, which is what `{version.rev}` holds. "
            "Nothing was trained. Run with `force` to retrain anyway.\n"
        )
        create_markdown_artifact(key="retrain-skipped", markdown=text, description=SKIPPED)
        result = {"skipped": True, "champion": champion.version, "data_md5": version.data_md5}
        return Completed(message=SKIPPED, data=result)
    return train_flow(data_rev=data_rev, overrides=overrides, project_dir=root)


def run_retraining(root: Path, data_rev: str | None, force: bool, overrides: list[str]) -> int:
    """``intent-mlops retrain``: run the flow and print the decision (or the skip)."""
    from flows.training import print_outcome

    state = retrain_flow(data_rev=data_rev, force=force, overrides=overrides, project_dir=str(root), return_state=True)
    out = state.result()
    if isinstance(out, dict) and out.get("skipped"):
        print(f"{SKIPPED}: champion version {out['champion']} was trained on data {out['data_md5']} with these params")
        print("(intent-mlops retrain --force trains anyway)")
        return 0
    print_outcome(root, out)
    return 0
