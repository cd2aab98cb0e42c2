"""The batch-predict flow: a CSV or Parquet file of utterances -> the same file with intents.

Uses the champion (or another alias, or a version number) through the same predictor the served
model runs, streams the input in chunks (bounded memory), writes the output atomically and records
the batch as an MLflow run. Only composition of ``tasks/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run
from pydantic import Field

from flows.parameters import ProjectDir
from intent_mlops.config.environment import apply_defaults
from intent_mlops.config.params import load_run_config
from tasks.batch import fetch_input, log_batch, predict_file, resolve_version

ChunkRows = Annotated[int, Field(ge=100, le=1_000_000)]


@flow(name="batch-predict-intents", log_prints=True, validate_parameters=True)
def batch_predict_flow(
    input_path: str,
    output_path: str,
    alias: str | None = None,
    version: str | None = None,
    rev: str | None = None,
    project_dir: ProjectDir = ".",
    chunk_rows: ChunkRows = 8192,
    progress: bool = True,
) -> dict[str, Any]:
    """Label every row of a CSV/Parquet file (column `text`) with the registered model.

    Args:
        input_path: CSV or Parquet file with a `text` column; relative paths are the project's.
        output_path: Where to write the predictions (.csv or .parquet); replaced only when complete.
        alias: Registered model alias to use (default: champion).
        version: Registered model version number to use instead of an alias.
        rev: Read input_path as this git revision records it (a DVC- or git-tracked file).
        project_dir: Project folder (params.yaml, the MLflow store) on the machine that runs the flow.
        chunk_rows: Rows read and predicted at a time (bounds memory).
        progress: Show a progress bar.
    """
    root = str(Path(project_dir).resolve())
    apply_defaults(root)
    cfg = load_run_config(root)
    ref = resolve_version(cfg, root, alias, version)
    source = fetch_input(root, input_path, rev)
    out = Path(output_path)
    out = out if out.is_absolute() else Path(root) / out
    result = predict_file(cfg, root, ref, source, str(out), chunk_rows, progress)
    label = f"{input_path}@{rev}" if rev else source
    run_id = log_batch(cfg, root, result, label, flow_run.get_name())
    top = "\n".join(f"| {k} | {v} |" for k, v in list(result.label_counts.items())[:15])
    create_markdown_artifact(
        key="batch-predictions",
        markdown=(
            f"# Batch predictions\n\n`{label}` -> `{result.output}` with **{ref.label}**\n\n"
            f"{result.rows} rows ({result.error_rows} not predicted), {result.rows_per_second:.0f} rows/s, "
            f"out of scope {100 * result.out_of_scope_rate:.1f} %\n\n| intent | rows |\n|---|---|\n{top}\n"
        ),
        description=f"{result.rows} rows with {ref.label}",
    )
    return {
        "output": str(result.output),
        "model_version": ref.label,
        "rows": result.rows,
        "error_rows": result.error_rows,
        "out_of_scope_rate": result.out_of_scope_rate,
        "rows_per_second": result.rows_per_second,
        "mlflow_run_id": run_id,
    }


def run_batch(root: Path, args: Any) -> int:
    """``intent-mlops predict IN OUT``: run the flow, print where the output is."""
    out = batch_predict_flow(
        input_path=str(Path(args.input).resolve()) if not args.rev else str(args.input),
        output_path=str(Path(args.output).resolve()),
        alias=args.alias,
        version=args.model_version,
        rev=args.rev,
        project_dir=str(root),
    )
    print(
        f"wrote {out['output']}: {out['rows']} rows with {out['model_version']} "
        f"({out['error_rows']} not predicted, out of scope {100 * out['out_of_scope_rate']:.1f} %, "
        f"{out['rows_per_second']:.0f} rows/s); MLflow run {out['mlflow_run_id']}"
    )
    return 0
