"""The prediction log: every answer of ``serve-model`` and of batch runs, written off the request path.

Callers hand a request's answers to :meth:`PredictionLog.record` (a queue put: microseconds); one
background thread writes what it holds every ``monitoring.flush_seconds`` (0.5 s by default), so a
SIGKILL loses at most that much. Two stores, one schema (:data:`COLUMNS`):

- embedded: Parquet files under ``.intent-mlops/predictions/day=YYYY-MM-DD/`` (UTC days, hive-style,
  so ``pd.read_parquet(folder)`` and DuckDB's ``read_parquet('…/*/*.parquet', hive_partitioning=true)``
  read it directly). Each flush is one small file written to a hidden name and renamed (a reader
  never sees half a file); every ``compact_seconds`` the writer merges its own small files of a day
  into one, so a day holds a few files per process, not one per second;
- team mode (``monitoring.log_url: postgresql://…``): a table ``intent_predictions`` (SQLAlchemy).

:func:`read_log` is the one reader (monitor flow, labelling, tests). Rows are unique on
``(request_id, row)``: a crash between a merge's rename and the deletion of its sources cannot count
an answer twice. ``log_text: false`` keeps only ``text_sha256``. The log holds what the clients sent
and what the model answered, nothing of the process's environment or configuration.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import logging
import os
import shutil
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from intent_mlops.config.params import MonitoringConfig

log = logging.getLogger(__name__)

LOG_DIR = Path(".intent-mlops") / "predictions"
TABLE = "intent_predictions"
SCHEMA_VERSION = 1
COLUMNS: dict[str, str] = {
    "time": "timestamp",  # when the answer was given (UTC)
    "model_version": "string",  # <registered model>/<version> that answered
    "request_id": "string",  # X-Request-ID of an online request, or the batch run's id
    "row": "int64",  # position of the text in its request / batch input
    "text": "string",  # the utterance (null with monitoring.log_text: false)
    "text_sha256": "string",
    "intent": "string",  # an intent or out_of_scope
    "score": "float64",  # probability of the top intent
    "margin": "float64",  # top-1 minus top-2 probability (NaN when the request asked for top_k=1)
    "out_of_scope": "bool",
    "ood_score": "float64",
    "latency_ms": "float64",  # the request's model time (online) / the chunk's time per row (batch)
    "source": "string",  # online, or batch:<run id>
    "schema_version": "int64",
}
"""Columns of a log row, with their logical type, in order."""


class LogSchemaError(ValueError):
    """The log holds rows of another (older or newer) layout than this version reads."""


def fingerprint(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).hexdigest()


def _arrow_schema() -> Any:
    import pyarrow as pa

    types = {"timestamp": pa.timestamp("us", tz="UTC"), "string": pa.string(), "int64": pa.int64(),
             "float64": pa.float64(), "bool": pa.bool_()}  # fmt: skip
    return pa.schema([(name, types[kind]) for name, kind in COLUMNS.items()])


def answer_columns(
    texts: Sequence[str],
    answers: Sequence[dict[str, Any]],
    *,
    request_id: str,
    latency_ms: float,
    source: str,
    log_text: bool = True,
    when: datetime | None = None,
) -> dict[str, list[Any]]:
    """Log columns for one request's answers (the dicts :meth:`Predictor.predict` returns)."""
    now = when or datetime.now(UTC)
    n = len(answers)
    margins = []
    for a in answers:
        top = a.get("top_k") or []
        margins.append(float(top[0]["probability"] - top[1]["probability"]) if len(top) >= 2 else float("nan"))
    return {
        "time": [now] * n,
        "model_version": [str(a.get("model_version", "")) for a in answers],
        "request_id": [request_id] * n,
        "row": list(range(n)),
        "text": [str(t) for t in texts] if log_text else [None] * n,
        "text_sha256": [fingerprint(str(t)) for t in texts],
        "intent": [str(a["label"]) for a in answers],
        "score": [float(a["score"]) for a in answers],
        "margin": margins,
        "out_of_scope": [bool(a["out_of_scope"]) for a in answers],
        "ood_score": [float(a["ood_score"]) for a in answers],
        "latency_ms": [float(latency_ms)] * n,
        "source": [source] * n,
        "schema_version": [SCHEMA_VERSION] * n,
    }


def batch_columns(
    texts: Sequence[Any],
    pred: pd.DataFrame,
    *,
    first_row: int,
    run_id: str,
    seconds: float,
    log_text: bool = True,
) -> dict[str, list[Any]]:
    """Log columns for the predicted rows of one batch chunk (the frame ``predict_chunk`` returns; rows
    with an ``error`` were not answered and are not logged), numbered from ``first_row`` in the input."""
    import numpy as np

    ok = pred["error"].isna().to_numpy()
    rows = np.flatnonzero(ok)
    n = len(rows)
    kept = [str(texts[int(i)]) for i in rows]
    p1 = pred["top1_probability"].to_numpy()[ok]
    p2 = pred["top2_probability"].to_numpy()[ok] if "top2_probability" in pred else np.full(n, np.nan)
    return {
        "time": [datetime.now(UTC)] * n,
        "model_version": pred["model_version"].to_numpy()[ok].tolist(),
        "request_id": [run_id] * n,
        "row": (rows + first_row).tolist(),
        "text": kept if log_text else [None] * n,
        "text_sha256": [fingerprint(t) for t in kept],
        "intent": pred["intent"].to_numpy()[ok].tolist(),
        "score": pred["intent_score"].to_numpy()[ok].astype(float).tolist(),
        "margin": (p1 - p2).astype(float).tolist(),
        "out_of_scope": pred["out_of_scope"].to_numpy()[ok].astype(bool).tolist(),
        "ood_score": pred["ood_score"].to_numpy()[ok].astype(float).tolist(),
        "latency_ms": [1000.0 * seconds / max(len(pred), 1)] * n,
        "source": [f"batch:{run_id}"] * n,
        "schema_version": [SCHEMA_VERSION] * n,
    }


# ---------------------------------------------------------------------------------------------- stores


class FileStore:
    """Parquet files, one folder per UTC day (``day=YYYY-MM-DD``)."""

    def __init__(self, folder: Path | str, compact_seconds: float = 600.0) -> None:
        self.folder = Path(folder)
        self.compact_seconds = compact_seconds
        self._tag = f"{socket.gethostname()}-{os.getpid()}-{time.time_ns() // 1_000_000}"
        self._seq = 0
        self._mine: dict[str, list[Path]] = {}  # day -> this writer's small files, oldest first
        self._last_compact = time.monotonic()

    def __str__(self) -> str:
        return str(self.folder)

    def day_folder(self, day: date) -> Path:
        return self.folder / f"day={day.isoformat()}"

    def write(self, table: Any) -> None:
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        days = pc.strftime(table["time"], format="%Y-%m-%d").to_pylist()
        for day in sorted(set(days)):
            part = (
                table.filter(pc.equal(pc.strftime(table["time"], format="%Y-%m-%d"), day))
                if len(set(days)) > 1
                else table
            )
            target = self.folder / f"day={day}"
            target.mkdir(parents=True, exist_ok=True)
            self._seq += 1
            name = f"part-{self._tag}-{self._seq:08d}.parquet"
            tmp = target / f".{name}.tmp"
            pq.write_table(part, tmp)
            os.replace(tmp, target / name)
            self._mine.setdefault(day, []).append(target / name)
        if time.monotonic() - self._last_compact >= self.compact_seconds:
            self.compact()

    def compact(self) -> None:
        """Merge this writer's small files of each day into one (rename first, then delete)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        self._last_compact = time.monotonic()
        for day, files in list(self._mine.items()):
            if len(files) < 2:
                continue
            merged = pa.concat_tables([pq.read_table(f) for f in files])
            self._seq += 1
            name = f"part-{self._tag}-{self._seq:08d}-merged.parquet"
            tmp = files[0].parent / f".{name}.tmp"
            pq.write_table(merged, tmp)
            os.replace(tmp, files[0].parent / name)
            for f in files:
                f.unlink(missing_ok=True)
            self._mine[day] = [files[0].parent / name]
        today = datetime.now(UTC).date().isoformat()
        for day in [d for d in self._mine if d < today]:
            del self._mine[day]  # a finished day is merged; never reopened

    def read(self, since: datetime, until: datetime) -> pd.DataFrame:
        import pyarrow as pa
        import pyarrow.parquet as pq

        tables = []
        day = since.astimezone(UTC).date()
        while day <= until.astimezone(UTC).date():
            folder = self.day_folder(day)
            for f in sorted(folder.glob("part-*.parquet")) if folder.is_dir() else []:
                try:
                    t = pq.read_table(f)
                except FileNotFoundError:  # merged away between listing and reading
                    continue
                _check_schema(t.schema.names, f)
                tables.append(t.select(list(COLUMNS)))
            day += timedelta(days=1)
        if not tables:
            return _arrow_schema().empty_table().to_pandas()
        return pa.concat_tables(tables).to_pandas()

    def prune(self, keep_days: int, now: datetime | None = None) -> list[str]:
        """Delete day folders older than ``keep_days``; returns their names."""
        cutoff = ((now or datetime.now(UTC)) - timedelta(days=keep_days)).date()
        gone = []
        for folder in sorted(self.folder.glob("day=*")) if self.folder.is_dir() else []:
            with contextlib.suppress(ValueError):
                if date.fromisoformat(folder.name.removeprefix("day=")) < cutoff:
                    shutil.rmtree(folder, ignore_errors=True)
                    gone.append(folder.name)
        return gone


class PostgresStore:
    """The table :data:`TABLE` in a PostgreSQL database (team mode: every endpoint writes to one place)."""

    def __init__(self, url: str) -> None:
        import sqlalchemy as sa

        self.url = url
        self.engine = sa.create_engine(_driver_url(url), pool_pre_ping=True)
        self.table = sa.Table(
            TABLE,
            sa.MetaData(),
            sa.Column("time", sa.DateTime(timezone=True), nullable=False, index=True),
            sa.Column("model_version", sa.Text),
            sa.Column("request_id", sa.Text, nullable=False),
            sa.Column("row", sa.BigInteger, nullable=False),
            sa.Column("text", sa.Text),
            sa.Column("text_sha256", sa.Text),
            sa.Column("intent", sa.Text),
            sa.Column("score", sa.Float),
            sa.Column("margin", sa.Float),
            sa.Column("out_of_scope", sa.Boolean),
            sa.Column("ood_score", sa.Float),
            sa.Column("latency_ms", sa.Float),
            sa.Column("source", sa.Text),
            sa.Column("schema_version", sa.BigInteger),
            sa.PrimaryKeyConstraint("request_id", "row"),
        )
        self.table.metadata.create_all(self.engine, checkfirst=True)

    def __str__(self) -> str:
        from intent_mlops.config.redact import redact

        return f"{redact(self.url)} (table {TABLE})"

    def write(self, table: Any) -> None:
        from sqlalchemy.dialects.postgresql import insert

        rows = table.to_pylist()
        with self.engine.begin() as conn:
            conn.execute(insert(self.table).on_conflict_do_nothing(), rows)

    def read(self, since: datetime, until: datetime) -> pd.DataFrame:
        import pandas as pd
        import sqlalchemy as sa

        query = sa.select(self.table).where(self.table.c.time >= since, self.table.c.time < until)
        with self.engine.connect() as conn:
            frame = pd.read_sql(query, conn)
        frame["time"] = pd.to_datetime(frame["time"], utc=True)
        return frame[list(COLUMNS)]

    def prune(self, keep_days: int, now: datetime | None = None) -> list[str]:
        import sqlalchemy as sa

        cutoff = (now or datetime.now(UTC)) - timedelta(days=keep_days)
        with self.engine.begin() as conn:
            gone = conn.execute(sa.delete(self.table).where(self.table.c.time < cutoff)).rowcount
        return [f"{gone} rows before {cutoff.isoformat()}"] if gone else []


Store = FileStore | PostgresStore


def _driver_url(url: str) -> str:
    """``postgresql://`` with the driver that is installed (SQLAlchemy 2.1 defaults to psycopg 3; MLflow's
    team-mode docs install psycopg2)."""
    import importlib.util

    installed = importlib.util.find_spec
    if url.startswith("postgresql://") and installed("psycopg") is None and installed("psycopg2") is not None:
        return "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    return url


def _check_schema(names: Sequence[str], where: Any) -> None:
    missing = [c for c in COLUMNS if c not in names]
    if missing:
        raise LogSchemaError(
            f"{where}: a prediction log file of another layout (no column {', '.join(missing[:3])}); "
            f"this version reads schema {SCHEMA_VERSION}: move the old files aside or wait for them to expire"
        )


def open_store(root: Path | str, cfg: MonitoringConfig) -> Store:
    """The configured store: files under the project's ``.intent-mlops/predictions/`` or PostgreSQL."""
    if cfg.log_url:
        return PostgresStore(cfg.log_url)
    return FileStore(Path(root) / LOG_DIR)


def read_log(store: Store, since: datetime, until: datetime | None = None) -> pd.DataFrame:
    """Rows with ``since <= time < until`` (default: now), oldest first, one per ``(request_id, row)``."""
    until = until or datetime.now(UTC)
    frame = store.read(since, until)
    if "schema_version" in frame and len(frame) and (frame["schema_version"] != SCHEMA_VERSION).any():
        other = sorted(set(frame["schema_version"].dropna().astype(int)) - {SCHEMA_VERSION})
        raise LogSchemaError(f"{store}: rows of log schema {other} in the window; this version reads {SCHEMA_VERSION}")
    frame = frame[(frame["time"] >= since) & (frame["time"] < until)]
    frame = frame.drop_duplicates(["request_id", "row"]).sort_values("time", kind="stable")
    return frame.reset_index(drop=True)


# ---------------------------------------------------------------------------------------------- writer


@dataclass
class _Pending:
    columns: dict[str, list[Any]] = field(default_factory=lambda: {c: [] for c in COLUMNS})
    rows: int = 0


class PredictionLog:
    """Non-blocking recorder with one background writer thread.

    A request only appends to a buffer (no queue, no wake-up): waking the writer once per request
    made it compete for the GIL with the request threads and cost about 20 ms of p50 latency on 2
    busy cores (``bench/inference.py endpoint``). The writer sleeps ``flush_seconds``, then takes
    the whole buffer at once.

    ``record`` never raises and never waits for a disk or a database: a failing store is logged
    (once per failure streak) and its rows are kept for the next flush, up to ``max_pending`` rows
    (then the oldest are dropped and counted in :attr:`dropped`).
    """

    def __init__(
        self, store: Store, *, flush_seconds: float = 0.5, log_text: bool = True, max_pending: int = 1_000_000
    ) -> None:
        self.store = store
        self.flush_seconds = flush_seconds
        self.log_text = log_text
        self.max_pending = max_pending
        self.dropped = 0
        self.written = 0
        self._buffer: collections.deque[dict[str, list[Any]]] = collections.deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._flushed = threading.Condition()
        self._submitted = 0
        self._done = 0
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    @classmethod
    def open(cls, root: Path | str, cfg: MonitoringConfig) -> PredictionLog | None:
        """The project's log (None when ``monitoring.log`` is off); prunes expired days first."""
        if not cfg.log:
            return None
        store = open_store(root, cfg)
        with contextlib.suppress(Exception):
            store.prune(cfg.retention_days)
        return cls(store, flush_seconds=cfg.flush_seconds, log_text=cfg.log_text)

    def record(self, columns: dict[str, list[Any]]) -> None:
        """Queue one request's (or chunk's) rows, as :func:`answer_columns` / :func:`batch_columns` build them."""
        with self._lock:  # uncontended: no thread is woken
            self._submitted += 1
            self._buffer.append(columns)

    def record_answers(
        self, texts: Sequence[str], answers: Sequence[dict[str, Any]], *, request_id: str, latency_ms: float,
        source: str = "online",
    ) -> None:  # fmt: skip
        self.record(
            answer_columns(
                texts, answers, request_id=request_id, latency_ms=latency_ms, source=source, log_text=self.log_text
            )
        )

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything recorded so far is written (or ``timeout``); True when it was."""
        target = self._submitted
        self._wake.set()  # write now
        with self._flushed:
            return self._flushed.wait_for(lambda: self._done >= target and not self._failing, timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Write what is left and stop the writer."""
        self.flush(timeout)
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout)

    # ------------------------------------------------------------------ the thread

    _failing = False

    def _run(self) -> None:
        pending = _Pending()
        while True:
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            stop = self._stopping
            taken = 0
            while self._buffer:
                item = self._buffer.popleft()
                for name in COLUMNS:
                    pending.columns[name].extend(item[name])
                pending.rows += len(item["time"])
                taken += 1
            self._write(pending, taken)
            if not self._failing:
                pending = _Pending()
            if stop:
                return

    def _write(self, pending: _Pending, taken: int) -> None:
        if pending.rows:
            import pyarrow as pa

            try:
                table = pa.Table.from_pydict(pending.columns, schema=_arrow_schema())
                self.store.write(table)
            except Exception as exc:  # keep the rows; try again at the next flush
                if not self._failing:
                    log.warning("prediction log: could not write %d rows to %s (%s); retrying", pending.rows,
                                self.store, exc)  # fmt: skip
                self._failing = True
                self._trim(pending)
                with self._flushed:
                    self._done += taken
                return
            self.written += pending.rows
            if self._failing:
                log.warning("prediction log: %s writable again", self.store)
            self._failing = False
        with self._flushed:
            self._done += taken
            self._flushed.notify_all()

    def _trim(self, pending: _Pending) -> None:
        extra = pending.rows - self.max_pending
        if extra > 0:
            for name in COLUMNS:
                del pending.columns[name][:extra]
            pending.rows -= extra
            self.dropped += extra
