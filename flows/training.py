"""The training flow: validate -> version -> fine-tune -> evaluate -> calibrate out-of-scope ->
export ONNX -> register (the pyfunc that serves) -> decide.

Only composition: each step is a task in ``tasks/`` wrapping a function of ``intent_mlops``.
Ephemeral Prefect by default; set ``PREFECT_API_URL`` to run against a Prefect server.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from flows.parameters import (
    DataRev,
    Epochs,
    LearningRate,
    Overrides,
    ProjectDir,
    RequireApproval,
    Significance,
    as_overrides,
)
from flows.promotion import decide_and_promote
from intent_mlops.config.environment import apply_defaults
from intent_mlops.config.params import load_run_config
from intent_mlops.registry.promotion import headline
from tasks.card import model_card
from tasks.data import gate_raw, gate_splits, prepare_splits, pull_data, record_validation
from tasks.inference import calibrate_ood, export_onnx
from tasks.promotion import log_train_set
from tasks.training import (
    close_run,
    evaluate,
    fine_tune,
    open_run,
    read_aliases,
    register,
    summary_markdown,
    tag_run,
)


@flow(name="train-intent-classifier", log_prints=True, validate_parameters=True)
def train_flow(
    data_rev: DataRev = None,
    overrides: Overrides = None,
    project_dir: ProjectDir = ".",
    epochs: Epochs = None,
    learning_rate: LearningRate = None,
    significance_test: Significance = None,
    require_approval: RequireApproval = None,
) -> dict[str, Any]:
    """Train on the data of a git revision (default: the workspace), register it and decide its promotion.

    The typed fields are shortcuts for ``params.yaml`` values; ``overrides`` sets any other one.

    Args:
        data_rev: Git revision whose data.dvc to train on (branch, tag or commit); empty: the workspace.
        overrides: Other params.yaml values as section.key=value, e.g. train.weight_decay=0.05.
        project_dir: Project folder (params.yaml, data.dvc) on the machine that runs the flow.
        epochs: train.epochs, the maximum number of epochs (1-100); empty: params.yaml.
        learning_rate: train.learning_rate, the peak AdamW learning rate; empty: params.yaml.
        significance_test: promotion.significance_test, paired bootstrap or McNemar; empty: params.yaml.
        require_approval: promotion.require_approval, pause for a person to approve; empty: params.yaml.
    """
    overrides = as_overrides(overrides, epochs, learning_rate, significance_test, require_approval)
    root = str(Path(project_dir).resolve())
    apply_defaults(root)  # a worker or `flow.serve` process never ran the CLI that sets them
    cfg = load_run_config(root, overrides)
    version = pull_data(root, data_rev)
    run_id, lineage = open_run(cfg, root, version, flow_run.get_name())
    tag_run(run_id, {"prefect.flow_run_id": str(flow_run.get_id() or "")})
    try:
        record_validation(gate_raw(str(version.raw_csv), version.data_md5, cfg.validation), run_id)
        splits = prepare_splits(version)
        record_validation(gate_splits(splits, cfg.validation), run_id)
        tag_run(run_id, {"splits.md5": splits.md5})
        result = fine_tune(cfg, splits, run_id, root)
        metrics = evaluate(cfg, result, splits, run_id)
        metrics |= calibrate_ood(cfg, result, splits, run_id)
        export_onnx(cfg, result, splits, run_id)
        log_train_set(splits, run_id)
        lineage = {**lineage, "splits.md5": splits.md5}
        registered = register(cfg, result, run_id, lineage)
        decision = decide_and_promote(cfg, root, registered, result.model_dir, splits, lineage)
        model_card(cfg, registered, splits, str(flow_run.get_id() or ""))
        aliases = read_aliases(registered.name)
    except BaseException as exc:
        close_run(run_id, exc)  # KILLED for an interrupt, FAILED otherwise, the reason as a tag
        raise
    close_run(run_id, "FINISHED", root)
    create_markdown_artifact(
        key="training-summary",
        markdown=summary_markdown(metrics, registered, aliases, decision),
        description="metrics",
    )
    return {
        "run_id": run_id,
        "registered_model": registered.name,
        "version": registered.version,
        "aliases": aliases,
        "decision": decision,
        "metrics": metrics,
        "data_md5": version.data_md5,
        "splits_md5": splits.md5,
    }


def print_outcome(root: Path, out: dict[str, Any]) -> None:
    """What a person needs after a run: metrics, this version's aliases, the decision, the UIs."""
    from intent_mlops.config.redact import redact
    from intent_mlops.registry import tracking
    from intent_mlops.registry.tracking import tracking_uri

    m = out["metrics"]
    print()
    print(f"dev:  accuracy {m['dev_accuracy']:.4f}  macro-F1 {m['dev_macro_f1']:.4f}")
    print(f"test: accuracy {m['test_accuracy']:.4f}  macro-F1 {m['test_macro_f1']:.4f}")
    mine = ", ".join(a for a, v in sorted(out["aliases"].items()) if v == out["version"]) or "none"
    print(f"registered {out['registered_model']} version {out['version']}; aliases of this version: {mine}")
    earlier = tracking.duplicate_version(out["registered_model"], out["version"])
    if earlier:
        print(
            f"note: this retrains the same data and params as version {earlier} "
            f"(tagged {tracking.DUPLICATE_OF_VERSION}={earlier})"
        )
    decision, reason = out["decision"]["decision"], out["decision"]["reason"]
    print(f"decision: {headline(decision, reason)}")
    champion = out["aliases"].get("champion")
    print(f"champion is version {champion}" if champion else "there is no champion yet")
    print(f"MLflow run {out['run_id']}, data {out['data_md5']}, splits {out['splits_md5']}")
    uri = redact(tracking_uri(load_run_config(root).mlflow, root))
    print("\nOpen the UIs:")
    print(f"  MLflow:  make mlflow-ui   (python -m flows.mlflow_ui ui --backend-store-uri {uri})")
    home = os.environ.get("PREFECT_HOME", "~/.prefect")
    print(f"  Prefect: make prefect-ui  (PREFECT_HOME={home} prefect server start --port 4200)")
    print()
    print_usage(out["version"], champion)


def print_usage(version: str, champion: str | None) -> None:
    """The summary's last lines: how to use the model just trained (by number unless it is the champion,
    which both commands use by default)."""
    if version == champion:
        print(f"Use the model (the champion, version {version}):")
        pick = ""
    else:
        now = f"the champion is version {champion}" if champion else "there is no champion"
        print(f"Use the model (version {version}; {now}):")
        pick = f" --version {version}"
    print(f"  intent-mlops predict{pick} FILE.csv OUT.csv   # label the text column of a CSV/Parquet file")
    print(f"  intent-mlops serve-model{pick}   # REST endpoint on http://127.0.0.1:5001/invocations")


def run_training(root: Path, data_rev: str | None, overrides: list[str]) -> int:
    """``intent-mlops train``: run the flow and print what a person needs next."""
    print_outcome(root, train_flow(data_rev=data_rev, overrides=overrides, project_dir=str(root)))
    return 0
