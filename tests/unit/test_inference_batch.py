"""Streamed batch prediction: CSV <-> Parquet, order kept, bad rows flagged, atomic output."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from intent_mlops.data.io import DataError
from intent_mlops.inference.batch import predict_file
from intent_mlops.inference.predictor import Predictor
from intent_mlops.inference.validation import Limits
from tests.unit.test_inference_predictor import TEXTS, tiny_classifier  # noqa: F401  (fixture)

ROWS = 3000


@pytest.fixture(scope="module")
def predictor(tiny_classifier: Path) -> Predictor:  # noqa: F811
    return Predictor.load(tiny_classifier, limits=Limits(max_batch=256), batch_size=128)


def _frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    texts = [TEXTS[i] + f" {k}" for k, i in enumerate(rng.integers(0, len(TEXTS), ROWS))]
    texts[7], texts[1500] = "", "   "  # bad rows are reported, not fatal
    return pd.DataFrame({"id": np.arange(ROWS), "text": texts})


@pytest.mark.parametrize(("src", "dst"), [("csv", "parquet"), ("parquet", "csv")])
def test_batch_predicts_every_row_in_order(predictor: Predictor, tmp_path: Path, src: str, dst: str) -> None:
    df = _frame()
    inp = tmp_path / f"in.{src}"
    df.to_csv(inp, index=False) if src == "csv" else df.to_parquet(inp, index=False)
    out = tmp_path / "out" / f"pred.{dst}"
    res = predict_file(predictor, inp, out, chunk_rows=700, top_k=2, progress=False)
    assert res.rows == ROWS and res.error_rows == 2 and res.predicted_rows == ROWS - 2
    assert res.rows_per_second > 0 and 0.0 <= res.out_of_scope_rate <= 1.0
    assert sum(res.label_counts.values()) == ROWS - 2
    got = pd.read_parquet(out) if dst == "parquet" else pd.read_csv(out, keep_default_na=False)
    assert len(got) == ROWS and got["id"].astype(int).tolist() == list(range(ROWS))
    assert {"intent", "intent_score", "out_of_scope", "ood_score", "top1_intent", "top2_probability",
            "model_version", "error"} <= set(got.columns)  # fmt: skip
    assert got.loc[7, "error"] == "empty or missing text" and got.loc[1500, "error"] == "empty or missing text"
    # same answers as the online path
    sample = [3, 999, 2999]
    direct = predictor.predict([df.loc[i, "text"] for i in sample])
    assert got.loc[sample, "intent"].tolist() == [r["label"] for r in direct]
    assert np.allclose(got.loc[sample, "intent_score"].astype(float), [r["score"] for r in direct], atol=1e-6)
    assert not list(out.parent.glob(".*.partial"))


def test_failure_leaves_no_output_and_previous_output_intact(
    predictor: Predictor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inp = tmp_path / "in.csv"
    _frame().to_csv(inp, index=False)
    out = tmp_path / "pred.parquet"
    out.write_bytes(b"previous run")
    calls = {"n": 0}
    real = predictor.predict_columns

    def flaky(texts: list[str], top_k: int = 3) -> dict[str, object]:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("disk full")
        return real(texts, top_k)

    monkeypatch.setattr(predictor, "predict_columns", flaky)
    with pytest.raises(RuntimeError, match="disk full"):
        predict_file(predictor, inp, out, chunk_rows=500, progress=False)
    assert out.read_bytes() == b"previous run"
    assert not list(tmp_path.glob(".*.partial"))


def test_bad_inputs(predictor: Predictor, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="missing.csv: input file not found"):
        predict_file(predictor, tmp_path / "missing.csv", tmp_path / "o.csv", progress=False)
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match="bad.parquet: cannot be read as parquet"):
        predict_file(predictor, tmp_path / "bad.parquet", tmp_path / "o.csv", progress=False)
    (tmp_path / "latin1.csv").write_bytes(b"text\n" + "caf\u00e9 ol\u00e9\n".encode("latin-1") * 3)
    with pytest.raises(DataError, match="latin1.csv: cannot be read as csv"):
        predict_file(predictor, tmp_path / "latin1.csv", tmp_path / "o.csv", progress=False)
    inp = tmp_path / "in.csv"
    pd.DataFrame({"utterance": ["hi"]}).to_csv(inp, index=False)
    with pytest.raises(DataError, match="no column 'text'"):
        predict_file(predictor, inp, tmp_path / "o.csv", progress=False)
    pd.DataFrame({"text": ["hi"], "intent": ["x"]}).to_csv(inp, index=False)
    with pytest.raises(DataError, match="clash"):
        predict_file(predictor, inp, tmp_path / "o.csv", progress=False)
    with pytest.raises(DataError, match="format"):
        predict_file(predictor, inp, tmp_path / "o.json", progress=False)
    assert not (tmp_path / "o.csv").exists()


@pytest.mark.parametrize("src", ["csv", "parquet"])
def test_parquet_output_types_do_not_depend_on_the_first_chunk(predictor: Predictor, tmp_path: Path, src: str) -> None:
    """The first blank row (an ``error``) and the first value of a sparse input column both come in the
    third chunk: the output schema is fixed before any chunk, so they are written, typed as declared."""
    texts = [TEXTS[i % len(TEXTS)] for i in range(120)]
    texts[105] = "  "  # chunks of 50 rows: row 105 is in the third
    note: list[str | None] = [None] * 120
    note[110] = "vip"
    df = pd.DataFrame({"text": texts, "note": pd.array(note, dtype="string")})
    inp = tmp_path / f"in.{src}"
    df.to_csv(inp, index=False) if src == "csv" else df.to_parquet(inp, index=False)
    out = tmp_path / "pred.parquet"
    res = predict_file(predictor, inp, out, chunk_rows=50, top_k=2, progress=False)
    assert res.rows == 120 and res.error_rows == 1
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pq.read_schema(out)
    assert schema.field("error").type == pa.string() and schema.field("intent").type == pa.string()
    assert schema.field("out_of_scope").type == pa.bool_() and schema.field("top2_probability").type == pa.float64()
    declared = pq.read_schema(inp).field("note").type if src == "parquet" else pa.string()  # CSV: read as text
    assert schema.field("note").type == declared
    got = pd.read_parquet(out)
    assert got.loc[105, "error"] == "empty or missing text" and got["error"].notna().sum() == 1
    assert got.loc[110, "note"] == "vip"


def test_a_second_writer_of_one_output_is_refused_and_the_first_output_is_clean(
    predictor: Predictor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two batch runs writing the same output at once: the second is refused with a message naming the
    output, the first finishes with every row of its own input once, in order; no partial file is left."""
    import threading

    first_in, second_in = tmp_path / "a.csv", tmp_path / "b.csv"
    _frame().to_csv(first_in, index=False)
    pd.DataFrame({"id": [-1, -2], "text": ["hi", "when do you open"]}).to_csv(second_in, index=False)
    out = tmp_path / "pred.csv"
    started, go_on = threading.Event(), threading.Event()
    real = predictor.predict_columns
    first_thread: list[int] = []

    def paused(texts: list[str], top_k: int = 3) -> dict[str, object]:
        if threading.get_ident() in first_thread and not go_on.is_set():
            started.set()  # the first run is mid-way: its first chunk is being predicted
            go_on.wait(60)
        return real(texts, top_k)

    monkeypatch.setattr(predictor, "predict_columns", paused)
    errors: list[BaseException] = []

    def first() -> None:
        first_thread.append(threading.get_ident())
        try:
            predict_file(predictor, first_in, out, chunk_rows=700, progress=False)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    t = threading.Thread(target=first)
    t.start()
    try:
        assert started.wait(60)
        with pytest.raises(DataError, match=r"pred\.csv: another batch run is writing this output"):
            predict_file(predictor, second_in, out, progress=False)
    finally:
        go_on.set()
        t.join(120)
    assert not errors, errors
    got = pd.read_csv(out, keep_default_na=False)
    assert got["id"].astype(int).tolist() == list(range(ROWS)), "the first run's rows, once each, in order"
    assert not list(tmp_path.glob(".*.partial"))
    predict_file(predictor, second_in, out, progress=False)  # the output is free again
    assert pd.read_csv(out)["id"].tolist() == [-1, -2]
