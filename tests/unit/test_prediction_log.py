"""The prediction log (issue 21): one schema, two stores, a writer that never blocks a request."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from intent_mlops.config.params import MonitoringConfig
from intent_mlops.monitoring.log import (
    COLUMNS,
    FileStore,
    LogSchemaError,
    PostgresStore,
    PredictionLog,
    answer_columns,
    fingerprint,
    open_store,
    read_log,
)

ANSWER = {
    "label": "track_order",
    "score": 0.9,
    "top_k": [{"label": "track_order", "probability": 0.9}, {"label": "cancel_order", "probability": 0.06}],
    "out_of_scope": False,
    "ood_score": 3.2,
    "model_version": "intent-classifier/4",
}
HOUR_AGO = datetime.now(UTC) - timedelta(hours=1)


def _record(plog: PredictionLog, request_id: str, texts: list[str], when: datetime | None = None) -> None:
    plog.record(answer_columns(texts, [ANSWER] * len(texts), request_id=request_id, latency_ms=4.0, source="online",
                               log_text=plog.log_text, when=when))  # fmt: skip


def test_round_trip_in_day_partitions_that_pandas_reads_directly(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "log")
    plog = PredictionLog(store, flush_seconds=0.1)
    _record(plog, "r1", ["where is my order", "hi"])
    _record(plog, "r2", ["cancel it"], when=datetime.now(UTC) - timedelta(days=1))
    assert plog.flush()
    plog.close()
    got = read_log(store, datetime.now(UTC) - timedelta(days=2))
    assert list(got.columns) == list(COLUMNS) and len(got) == 3
    assert got["request_id"].tolist() == ["r2", "r1", "r1"], "oldest first"
    first = got.iloc[1]
    assert first["text"] == "where is my order" and first["text_sha256"] == fingerprint("where is my order")
    assert first["margin"] == pytest.approx(0.84) and first["model_version"] == "intent-classifier/4"
    days = sorted(p.name for p in (tmp_path / "log").iterdir())
    assert len(days) == 2 and all(d.startswith("day=") for d in days)
    direct = pd.read_parquet(tmp_path / "log")  # hive partitions: the whole folder is one table
    assert len(direct) == 3 and "day" in direct.columns


def test_text_off_keeps_only_the_fingerprint(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "log")
    plog = PredictionLog(store, flush_seconds=0.1, log_text=False)
    _record(plog, "r1", ["my card number is 4111 1111 1111 1111"])
    plog.close()
    got = read_log(store, HOUR_AGO)
    assert got["text"].isna().all() and got["text_sha256"].iloc[0] == fingerprint(
        "my card number is 4111 1111 1111 1111"
    )
    assert b"4111" not in b"".join(p.read_bytes() for p in (tmp_path / "log").rglob("*.parquet"))


def test_compaction_merges_small_files_and_a_crash_cannot_count_twice(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "log", compact_seconds=3600)
    plog = PredictionLog(store, flush_seconds=0.05)
    for i in range(5):
        _record(plog, f"r{i}", ["a", "b"])
        assert plog.flush()
    day = next((tmp_path / "log").iterdir())
    small = sorted(day.glob("part-*.parquet"))
    assert len(small) == 5
    copies = [f.read_bytes() for f in small]
    store.compact()
    assert len(list(day.glob("part-*.parquet"))) == 1
    for f, data in zip(small, copies, strict=True):  # a crash after the merge's rename, before the deletes
        f.write_bytes(data)
    got = read_log(store, HOUR_AGO)
    assert len(got) == 10 and not got.duplicated(["request_id", "row"]).any()
    plog.close()


def test_a_log_of_another_layout_is_one_clear_error(tmp_path: Path) -> None:
    day = tmp_path / "log" / f"day={datetime.now(UTC).date().isoformat()}"
    day.mkdir(parents=True)
    pq.write_table(pa.table({"time": [datetime.now(UTC)], "text": ["hi"], "label": ["x"]}), day / "part-old.parquet")
    with pytest.raises(LogSchemaError, match="another layout.*no column model_version"):
        read_log(FileStore(tmp_path / "log"), HOUR_AGO)


def test_retention_prunes_whole_days(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "log")
    for days_ago in (0, 5, 40):
        (store.day_folder((datetime.now(UTC) - timedelta(days=days_ago)).date())).mkdir(parents=True)
    gone = store.prune(30)
    assert len(gone) == 1 and len(list((tmp_path / "log").iterdir())) == 2


class _Flaky(FileStore):
    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.fail = True

    def write(self, table: Any) -> None:
        if self.fail:
            raise OSError("disk full")
        super().write(table)


def test_a_failing_store_keeps_the_rows_for_the_next_flush(tmp_path: Path) -> None:
    store = _Flaky(tmp_path / "log")
    plog = PredictionLog(store, flush_seconds=0.05)
    _record(plog, "r1", ["a"])
    assert not plog.flush(timeout=0.5), "not written while the store fails"
    store.fail = False
    _record(plog, "r2", ["b"])
    assert plog.flush(timeout=5)
    plog.close()
    assert sorted(read_log(store, HOUR_AGO)["request_id"]) == ["r1", "r2"]


def test_monitoring_off_opens_no_log(tmp_path: Path) -> None:
    assert PredictionLog.open(tmp_path, MonitoringConfig(log=False)) is None


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A throwaway database on the local PostgreSQL (the team-mode store)."""
    name = f"predlog_{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "PGHOST": "127.0.0.1", "PGUSER": "postgres"}
    try:
        subprocess.run(["createdb", name], check=True, capture_output=True, env=env)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"no local PostgreSQL: {exc}")
    yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    subprocess.run(["dropdb", "--if-exists", "--force", name], capture_output=True, env=env)


def test_postgres_store_same_rows_same_reader(pg_url: str) -> None:
    store = open_store("/nonexistent", MonitoringConfig(log_url=pg_url))
    assert isinstance(store, PostgresStore)
    plog = PredictionLog(store, flush_seconds=0.05)
    _record(plog, "r1", ["where is my order", "hi"])
    _record(plog, "r1", ["where is my order", "hi"])  # the same request again: kept once
    _record(plog, "old", ["x"], when=datetime.now(UTC) - timedelta(days=40))
    plog.close()
    got = read_log(store, datetime.now(UTC) - timedelta(days=60))
    assert list(got.columns) == list(COLUMNS) and len(got) == 3
    assert store.prune(30) and len(read_log(store, datetime.now(UTC) - timedelta(days=60))) == 2
    assert "postgres@" not in str(store) and "***@" in str(store), "the user name stays out of messages"
