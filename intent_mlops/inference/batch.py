"""Batch prediction over a CSV or Parquet file, streamed in chunks, written atomically.

Memory stays bounded by the chunk: CSV is read with pandas' ``chunksize``, Parquet with pyarrow's
``iter_batches``; each chunk is predicted (length-sorted batches inside the Predictor) and appended to
a hidden partial file of this run's own next to the output, which replaces the output only when every
row is done. A crash leaves the previous output (if any) untouched and the partial file is removed; a
rerun starts cleanly. One run writes an output at a time (a lock file beside it, ``.<name>.lock``): a
second run for the same output is refused with a message naming it.

Output columns: every input column, then ``intent`` (an intent or ``out_of_scope``; empty for rows
with an ``error``), ``intent_score``, ``out_of_scope``, ``ood_score``, ``top{i}_intent`` /
``top{i}_probability`` for i = 1..top_k, ``model_version`` and ``error`` (why a row was not predicted:
blank or missing text).
"""

from __future__ import annotations

import contextlib
import glob
import os
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from intent_mlops.data.io import DataError
from intent_mlops.inference.predictor import Predictor

if TYPE_CHECKING:
    from intent_mlops.monitoring.log import PredictionLog

FORMATS = ("csv", "parquet")


@dataclass
class BatchResult:
    output: Path
    rows: int
    predicted_rows: int
    error_rows: int
    seconds: float
    label_counts: dict[str, int] = field(default_factory=dict)
    model_version: str = ""

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    @property
    def out_of_scope_rate(self) -> float:
        return self.label_counts.get("out_of_scope", 0) / self.predicted_rows if self.predicted_rows else 0.0

    def metrics(self) -> dict[str, float]:
        """Figures to log (e.g. ``mlflow.log_metrics``); ``label_counts`` goes best as a JSON artifact."""
        return {
            "batch_rows": float(self.rows),
            "batch_predicted_rows": float(self.predicted_rows),
            "batch_error_rows": float(self.error_rows),
            "batch_seconds": self.seconds,
            "batch_rows_per_second": self.rows_per_second,
            "batch_out_of_scope_rate": self.out_of_scope_rate,
        }


def file_format(path: Path | str, given: str | None = None) -> str:
    fmt = (given or Path(path).suffix.lstrip(".")).lower()
    fmt = {"pq": "parquet", "parq": "parquet"}.get(fmt, fmt)
    if fmt not in FORMATS:
        raise DataError(f"{path}: cannot tell the format from the name (expected a .csv or .parquet file)")
    return fmt


def check_input(path: Path | str, text_column: str = "text", fmt: str | None = None) -> None:
    """The file can be read and has ``text_column``: checked from its header or schema alone, so a
    command can refuse a wrong file in a second, before any model or flow starts."""
    chunks, _ = read_chunks(path, 1, fmt)
    try:
        first = next(chunks, None)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    if first is not None and text_column not in first.columns:
        raise DataError(f"{path}: no column {text_column!r} (columns: {list(first.columns)[:10]})")


def read_chunks(path: Path | str, chunk_rows: int, fmt: str | None = None) -> tuple[Iterator[pd.DataFrame], int | None]:
    """Chunks of the input as DataFrames, and the row count when the format knows it cheaply.

    A file that cannot be parsed (bad Parquet, broken CSV quoting, non-UTF-8 bytes) is a
    :class:`DataError` naming the file, when opened or at the chunk where it breaks."""
    import pyarrow as pa

    path = Path(path)
    broken = (pa.ArrowException, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError)
    try:
        if file_format(path, fmt) == "parquet":
            import pyarrow.parquet as pq

            pf = pq.ParquetFile(path)
            chunks: Iterator[pd.DataFrame] = (b.to_pandas() for b in pf.iter_batches(batch_size=chunk_rows))
            total: int | None = pf.metadata.num_rows
        else:
            chunks = iter(pd.read_csv(path, chunksize=chunk_rows, dtype=str, keep_default_na=False, na_filter=False))
            total = None
    except broken as exc:
        raise DataError(f"{path}: cannot be read as {file_format(path, fmt)}: {_short(exc)}") from exc

    def checked() -> Iterator[pd.DataFrame]:
        try:
            yield from chunks
        except broken as exc:
            raise DataError(f"{path}: cannot be read as {file_format(path, fmt)}: {_short(exc)}") from exc

    return checked(), total


def input_types(path: Path | str, fmt: str | None = None) -> dict[str, Any]:
    """Column -> Arrow type as a Parquet input declares it ({} for CSV, whose columns are read as text)."""
    if file_format(path, fmt) != "parquet":
        return {}
    import pyarrow.parquet as pq

    return {f.name: f.type for f in pq.read_schema(path)}


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]


class _Writer:
    """Appends chunks to a partial file of its own; :meth:`commit` renames it over the output. Create
    it under :func:`output_lock`.

    The Parquet schema is fixed before the first chunk from ``types`` (the input file's declared types
    and the prediction columns'), never inferred from a chunk's values: a chunk without blank rows
    has an all-null ``error`` column, and a schema taken from it would refuse a later chunk's message.
    """

    def __init__(self, output: Path, fmt: str, types: dict[str, Any]) -> None:
        self.output, self.fmt, self.types = output, fmt, types
        # a crashed earlier run's leftovers; safe to remove because the caller holds the output's lock
        for stale in output.parent.glob(f".{glob.escape(output.name)}.*partial"):
            stale.unlink(missing_ok=True)
        # this run's own name (created like the output, same permissions): no writer appends to another's
        self.partial = output.with_name(f".{output.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.partial")
        self._pq: Any = None
        self._schema: Any = None
        self._first = True

    def write(self, df: pd.DataFrame) -> None:
        if self.fmt == "csv":
            df.to_csv(self.partial, mode="w" if self._first else "a", header=self._first, index=False)
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            if self._schema is None:  # CSV input columns are read as text: string unless declared
                self._schema = pa.schema([pa.field(str(c), self.types.get(str(c), pa.string())) for c in df.columns])
            table = pa.Table.from_pandas(df, schema=self._schema, preserve_index=False)
            if self._pq is None:
                self._pq = pq.ParquetWriter(self.partial, table.schema)
            self._pq.write_table(table)
        self._first = False

    def commit(self) -> None:
        if self._pq is not None:
            self._pq.close()
        with open(self.partial, "rb+") as fh:  # data on disk before the rename makes it visible
            os.fsync(fh.fileno())
        os.replace(self.partial, self.output)

    def abort(self) -> None:
        if self._pq is not None:
            with contextlib.suppress(Exception):  # already failing; the partial file goes anyway
                self._pq.close()
        self.partial.unlink(missing_ok=True)


@contextlib.contextmanager
def output_lock(output: Path) -> Iterator[None]:
    """One writer per output path (a file lock beside it, released by the OS if the process dies): a
    second batch run writing the same file is refused at once, not interleaved with the first."""
    from filelock import FileLock, Timeout

    lock = output.with_name(f".{output.name}.lock")
    try:
        with FileLock(str(lock), timeout=0):
            yield
    except Timeout:
        raise DataError(
            f"{output}: another batch run is writing this output (lock {lock.name}); "
            "wait for it to finish or write to another path"
        ) from None


def prediction_types(top_k: int) -> dict[str, Any]:
    """The Arrow type of each column :func:`predict_chunk` adds, whatever a chunk's values are."""
    import pyarrow as pa

    types: dict[str, Any] = {"intent": pa.string(), "intent_score": pa.float64(), "out_of_scope": pa.bool_(),
                             "ood_score": pa.float64()}  # fmt: skip
    for i in range(top_k):
        types[f"top{i + 1}_intent"], types[f"top{i + 1}_probability"] = pa.string(), pa.float64()
    return types | {"model_version": pa.string(), "error": pa.string()}


def predict_chunk(predictor: Predictor, texts: list[Any], top_k: int) -> pd.DataFrame:
    """Prediction columns for one chunk; blank / non-string texts get an ``error`` instead."""
    n = len(texts)
    ok = np.array([isinstance(t, str) and bool(t.strip()) for t in texts], dtype=bool)
    max_chars = predictor.limits.max_chars
    valid = [t[:max_chars] for t, good in zip(texts, ok, strict=True) if good]
    out: dict[str, Any] = {
        "intent": np.full(n, None, dtype=object),
        "intent_score": np.full(n, np.nan),
        "out_of_scope": pd.array([pd.NA] * n, dtype="boolean"),
        "ood_score": np.full(n, np.nan),
    }
    for i in range(top_k):
        out[f"top{i + 1}_intent"] = np.full(n, None, dtype=object)
        out[f"top{i + 1}_probability"] = np.full(n, np.nan)
    step = predictor.limits.max_batch
    cols_parts = [predictor.predict_columns(valid[s : s + step], top_k) for s in range(0, len(valid), step)]
    if cols_parts:
        cols = {k: np.concatenate([c[k] for c in cols_parts]) for k in cols_parts[0]}
        out["intent"][ok] = cols["label"]
        out["intent_score"][ok] = cols["score"]
        out["out_of_scope"][ok] = cols["out_of_scope"]
        out["ood_score"][ok] = cols["ood_score"]
        for i in range(top_k):
            out[f"top{i + 1}_intent"][ok] = cols["top_labels"][:, i]
            out[f"top{i + 1}_probability"][ok] = cols["top_probs"][:, i]
    out["model_version"] = np.full(n, predictor.model_version, dtype=object)
    out["error"] = np.array([None if good else "empty or missing text" for good in ok], dtype=object)
    return pd.DataFrame(out)


def predict_file(
    predictor: Predictor,
    input_path: Path | str,
    output_path: Path | str,
    *,
    text_column: str = "text",
    top_k: int = 3,
    chunk_rows: int = 8192,
    input_format: str | None = None,
    output_format: str | None = None,
    progress: bool = True,
    prediction_log: PredictionLog | None = None,
    run_id: str = "",
) -> BatchResult:
    """Predict every row of ``input_path`` into ``output_path`` (CSV or Parquet by suffix).

    With a ``prediction_log`` every answered row is recorded as it is predicted (source
    ``batch:<run_id>``, ``row`` = its position in the input), so a run that fails later leaves the
    rows it answered in the log under its own run id."""
    from intent_mlops.monitoring.log import batch_columns
    from intent_mlops.train.progress import progress_bar

    input_path, output_path = Path(input_path), Path(output_path)
    if not input_path.exists():
        raise DataError(f"{input_path}: input file not found")
    if input_path.resolve() == output_path.resolve():
        raise DataError(f"{output_path}: the output must not overwrite the input file")
    out_fmt = file_format(output_path, output_format)
    chunks, total = read_chunks(input_path, chunk_rows, input_format)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    counts: Counter[str] = Counter()
    rows = errors = 0
    t0 = time.perf_counter()
    with output_lock(output_path):
        writer = _Writer(output_path, out_fmt, input_types(input_path, input_format) | prediction_types(top_k))
        bar = progress_bar(total=total, unit="row", desc=f"predict {input_path.name}", disable=not progress)
        try:
            for chunk in chunks:
                if text_column not in chunk.columns:
                    raise DataError(f"{input_path}: no column {text_column!r} (columns: {list(chunk.columns)[:10]})")
                texts = chunk[text_column].tolist()
                started = time.perf_counter()
                pred = predict_chunk(predictor, texts, top_k)
                clash = sorted(set(chunk.columns) & set(pred.columns))
                if clash:
                    raise DataError(f"{input_path}: input columns {clash} clash with prediction columns; rename them")
                writer.write(pd.concat([chunk.reset_index(drop=True), pred], axis=1))
                if prediction_log is not None:
                    seconds = time.perf_counter() - started
                    log_text = prediction_log.log_text
                    prediction_log.record(batch_columns(texts, pred, first_row=rows, run_id=run_id or uuid.uuid4().hex,
                                                        seconds=seconds, log_text=log_text))  # fmt: skip
                counts.update(pred["intent"].dropna().tolist())
                errors += int(pred["error"].notna().sum())
                rows += len(chunk)
                bar.update(len(chunk))
            if rows == 0:
                raise DataError(f"{input_path}: no rows to predict")
            writer.commit()
        except BaseException:
            writer.abort()
            raise
        finally:
            bar.close()
    return BatchResult(
        output=output_path,
        rows=rows,
        predicted_rows=rows - errors,
        error_rows=errors,
        seconds=time.perf_counter() - t0,
        label_counts=dict(counts.most_common()),
        model_version=predictor.model_version,
    )


def log_batch_run(experiment_id: str, result: BatchResult, source: str, run_name: str | None = None) -> str:
    """One MLflow run (``intent-mlops.kind=batch-predict``) per batch: row counts, throughput,
    out-of-scope rate, the predicted-intent distribution (JSON) and which version answered."""
    import mlflow

    client = mlflow.MlflowClient()
    run = client.create_run(
        experiment_id,
        run_name=run_name,
        tags={"intent-mlops.kind": "batch-predict", "model.version": result.model_version},
    )
    run_id = run.info.run_id
    client.log_batch(
        run_id,
        metrics=[mlflow.entities.Metric(k, v, int(time.time() * 1000), 0) for k, v in result.metrics().items()],
        params=[mlflow.entities.Param(k, str(v)[:500]) for k, v in {"input": source, "output": result.output}.items()],
    )
    client.log_dict(run_id, {"model_version": result.model_version, "intents": result.label_counts},
                    "batch/intent_distribution.json")  # fmt: skip
    client.set_terminated(run_id, "FINISHED")
    return run_id
