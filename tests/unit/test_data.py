from pathlib import Path

import pandas as pd
import pytest

from intent_mlops.data.io import DataError, normalise_text, read_csv, require_columns
from intent_mlops.data.split import prepare_splits, stratified_split
from intent_mlops.demo.corpus import generate


def test_read_csv_accepts_banking77_header(tmp_path: Path) -> None:
    path = tmp_path / "b.csv"
    path.write_text("text,category\nmy new card has not come yet,card_arrival\nhello there,greeting\n")
    df = read_csv(path)
    require_columns(df, path)
    assert list(df.columns) == ["text", "label"]
    assert list(df.index) == [2, 3], "index is the CSV line number"


def test_missing_column_names_file_and_column(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("utterance_id,label\n1,a\n")
    with pytest.raises(DataError, match=r"x\.csv: missing column\(s\) \['text'\]"):
        require_columns(read_csv(path), path)


def test_unreadable_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nope.csv: file not found"):
        read_csv(tmp_path / "nope.csv")
    bad = tmp_path / "latin1.csv"
    bad.write_bytes("text,label\ncaf\xe9,x\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1\.csv: line 2 is not UTF-8 \(.* at byte 4 of the line"):
        read_csv(bad)


def test_split_is_deterministic_and_stratified(tmp_path: Path) -> None:
    df = generate(per_intent=40)
    raw = tmp_path / "raw.csv"
    df.to_csv(raw, index=False)
    a = prepare_splits(raw, tmp_path / "a", 0.1, 0.1, seed=7)
    b = prepare_splits(raw, tmp_path / "b", 0.1, 0.1, seed=7)
    for name in ("train", "dev", "test"):
        assert getattr(a, name).read_bytes() == getattr(b, name).read_bytes()
    c = prepare_splits(raw, tmp_path / "c", 0.1, 0.1, seed=8)
    assert a.dev.read_bytes() != c.dev.read_bytes()
    parts = {n: read_csv(p) for n, p in a.as_dict().items()}
    labels = set(df["label"])
    for name in ("dev", "test"):
        assert set(parts[name]["label"]) == labels, f"every intent in {name}"
        share = len(parts[name]) / len(df)
        assert 0.08 < share < 0.12
    assert sum(len(p) for p in parts.values()) == len(df)


def test_duplicates_never_straddle_splits() -> None:
    df = pd.DataFrame(
        {
            "text": ["Hello  world", "hello world", *[f"t{i}" for i in range(30)]],
            "label": ["a", "a", *(["a", "b", "c"] * 10)],
        }
    )
    parts = stratified_split(df, 0.2, 0.2, seed=1)
    where = {n for n, p in parts.items() if (normalise_text(p["text"]) == "hello world").any()}
    assert len(where) == 1
