"""Each GX expectation fails on one planted bad row, and the message says which row and why."""

from __future__ import annotations

import json
from dataclasses import asdict

import pandas as pd
import pytest

from intent_mlops.config.params import ValidationConfig
from intent_mlops.data.split import stratified_split
from intent_mlops.data.validation import (
    ValidationError,
    ValidationReport,
    gate_import,
    normalise_labels,
    validate_raw,
    validate_splits,
)
from intent_mlops.demo.corpus import generate

CFG = ValidationConfig(min_rows=50, min_per_label=5, min_chars=2, max_chars=80)


@pytest.fixture(scope="module")
def good() -> pd.DataFrame:
    df = generate(per_intent=8, typo_rate=0.0, label_noise=0.0)
    df = df[df["text"].str.len() <= 80].reset_index(drop=True)
    df.index = pd.RangeIndex(2, len(df) + 2, name="line")
    return df


def _only_failure(rep: ValidationReport) -> str:
    assert not rep.success
    assert len(rep.failures) == 1, rep.summary()
    return rep.summary()


def test_clean_data_passes(good: pd.DataFrame) -> None:
    rep = validate_raw(good, CFG, "good.csv")
    assert rep.success, rep.summary()
    assert rep.evaluated >= 10


@pytest.mark.parametrize(
    ("value", "expectation", "problem"),
    [
        ("   ", "expect_column_values_to_not_match_regex", "blank text"),
        (None, "expect_column_values_to_not_be_null", "empty text"),
        ("x", "expect_column_value_lengths_to_be_between", "text length outside [2, 80]"),
        ("y" * 81, "expect_column_value_lengths_to_be_between", "text length outside [2, 80]"),
    ],
)
def test_planted_bad_text(good: pd.DataFrame, value: object, expectation: str, problem: str) -> None:
    bad = good.astype(object)
    bad.loc[7, "text"] = value
    text = _only_failure(validate_raw(bad, CFG, "bad.csv"))
    assert expectation in text and problem in text
    assert "line=7" in text and "bad.csv" in text


def test_planted_blank_label(good: pd.DataFrame) -> None:
    bad = good.copy()
    lines = bad.reset_index().groupby("label")["line"].first().head(CFG.min_per_label).tolist()
    bad.loc[lines, "label"] = " "
    text = _only_failure(validate_raw(bad, CFG, "bad.csv"))
    assert "expect_column_values_to_not_match_regex(label): blank label" in text
    assert f"line={lines[0]}" in text


def test_missing_column(good: pd.DataFrame) -> None:
    text = _only_failure(validate_raw(good.drop(columns=["label"]), CFG, "nolabel.csv"))
    assert "required column 'label' is missing" in text


def test_too_few_rows(good: pd.DataFrame) -> None:
    cfg = ValidationConfig(min_rows=len(good) + 1, min_per_label=5, min_chars=2, max_chars=80)
    text = _only_failure(validate_raw(good, cfg, "short.csv"))
    assert f"{len(good)} rows, fewer than {len(good) + 1}" in text


def test_label_with_one_example(good: pd.DataFrame) -> None:
    bad = good.copy()
    bad.loc[9, "label"] = "lonely_intent"
    text = _only_failure(validate_raw(bad, CFG, "bad.csv"))
    assert "labels with fewer than 5 examples" in text and "lonely_intent" in text


def test_same_text_two_labels(good: pd.DataFrame) -> None:
    bad = good.copy()
    other = next(lab for lab in bad["label"].unique() if lab != bad.loc[3, "label"])
    bad.loc[12] = [bad.loc[3, "text"].upper(), other]
    text = _only_failure(validate_raw(bad, CFG, "bad.csv"))
    assert "same text appears with two different labels" in text
    assert "line=3" in text and "line=12" in text


def test_error_carries_report(good: pd.DataFrame) -> None:
    rep = validate_raw(good.head(10), CFG, "bad.csv")
    err = ValidationError(rep)
    assert err.report is rep and "bad.csv" in str(err)
    assert "| table | expectation |" in rep.markdown()


@pytest.fixture(scope="module")
def splits(good: pd.DataFrame) -> dict[str, pd.DataFrame]:
    parts = stratified_split(good, 0.15, 0.15, seed=3)
    for df in parts.values():
        df.index = pd.RangeIndex(2, len(df) + 2, name="line")
    return parts


def test_clean_splits_pass(splits: dict[str, pd.DataFrame]) -> None:
    rep = validate_splits(splits, CFG, "splits/")
    assert rep.success, rep.summary()


def test_leakage_between_splits(splits: dict[str, pd.DataFrame]) -> None:
    leaked = dict(splits)
    row = splits["train"].iloc[[0]]
    leaked["test"] = pd.concat([splits["test"], row]).set_axis(pd.RangeIndex(2, len(splits["test"]) + 3, name="line"))
    text = _only_failure(validate_splits(leaked, CFG, "splits/"))
    assert "two splits (leakage)" in text and "row='train:2'" in text


def test_unknown_label_in_dev(splits: dict[str, pd.DataFrame]) -> None:
    odd = dict(splits)
    dev = splits["dev"].copy()
    dev.loc[2, "label"] = "never_trained"
    odd["dev"] = dev
    text = _only_failure(validate_splits(odd, CFG, "splits/"))
    assert "label not seen in train" in text


@pytest.mark.parametrize("char", ["\x00", "\x07", "\x1b", "\x7f", "\x0c"])
def test_control_characters_in_text_are_refused(good: pd.DataFrame, char: str) -> None:
    bad = good.copy()
    bad.loc[7, "text"] = f"hello{char}there"
    text = _only_failure(validate_raw(bad, CFG, "bad.csv"))
    assert "expect_column_values_to_not_match_regex(text): control characters (e.g. NUL) in text" in text
    assert "line=7" in text and repr(char)[1:-1] in text


def test_control_character_in_label_is_refused(good: pd.DataFrame) -> None:
    bad = good.copy()
    label = bad.loc[2, "label"]
    bad.loc[bad["label"] == label, "label"] = label + "\x00"
    text = _only_failure(validate_raw(bad, CFG, "bad.csv"))
    assert "control characters (e.g. NUL) in label" in text and "line=2" in text


def test_newlines_and_tabs_in_text_are_fine(good: pd.DataFrame) -> None:
    ok = good.copy()
    ok.loc[7, "text"] = "first line\nsecond\r\nthird\tcolumn"
    assert validate_raw(ok, CFG, "ok.csv").success


def _with_spelling(good: pd.DataFrame, spelling: str, n: int = 5) -> pd.DataFrame:
    """``good`` with its first label renamed ``card arrival``, plus ``n`` new rows labelled ``spelling``."""
    out = good.copy()
    out.loc[out["label"] == good["label"].iloc[0], "label"] = "card arrival"
    extra = pd.DataFrame(
        {"text": [f"an extra utterance number {i}" for i in range(n)], "label": [spelling] * n},
        index=pd.RangeIndex(1000, 1000 + n, name="line"),
    )
    return pd.concat([out, extra])


@pytest.mark.parametrize("variant", ["Card Arrival", "CARD ARRIVAL", "card  arrival", "card\tarrival"])
def test_labels_differing_by_case_or_spacing_are_refused(good: pd.DataFrame, variant: str) -> None:
    text = _only_failure(validate_raw(_with_spelling(good, variant), CFG, "bad.csv"))
    assert "[raw_label_spellings] expect_column_values_to_be_unique(label_key)" in text
    assert "labels differ only by case or spacing" in text and "normalise_labels" in text
    assert "'card arrival' (" in text and f"{variant!r} (5 row(s), first on line 1000)" in text


def test_distinct_labels_with_shared_words_pass(good: pd.DataFrame) -> None:
    ok = _with_spelling(good, "card arrival late")
    assert validate_raw(ok, CFG, "ok.csv").success


def test_normalise_labels_maps_to_most_frequent_spelling() -> None:
    labels = ["Greet", "greet", "greet", "GREET ", "bye", "Bye", "x y", "x  y", "z", None]
    df = pd.DataFrame({"text": list("abcdefghij"), "label": labels}, index=pd.RangeIndex(2, 12, name="line"))
    out, mapping = normalise_labels(df)
    # most frequent wins; a tie goes to the lexicographically first spelling ("Bye" < "bye", "x  y" < "x y")
    assert mapping == {"Greet": "greet", "GREET ": "greet", "bye": "Bye", "x y": "x  y"}
    assert out["label"].tolist()[:9] == ["greet"] * 4 + ["Bye", "Bye", "x  y", "x  y", "z"]
    assert pd.isna(out["label"].iloc[9]) and out.index.equals(df.index) and out["text"].equals(df["text"])
    assert df["label"].tolist()[0] == "Greet", "input left as it was"
    same, none = normalise_labels(df.iloc[8:])
    assert none == {} and same is not None


def test_gate_import_normalises_only_when_configured(good: pd.DataFrame) -> None:
    data = _with_spelling(good, "Card  Arrival")
    _, refused, mapping = gate_import(data, CFG, "in.csv")
    assert not refused.success and mapping == {}
    cfg = ValidationConfig(min_rows=50, min_per_label=5, min_chars=2, max_chars=80, normalise_labels=True)
    stored, rep, mapping = gate_import(data, cfg, "in.csv")
    assert rep.success, rep.summary()
    assert mapping == {"Card  Arrival": "card arrival"}
    assert set(stored.loc[1000:, "label"]) == {"card arrival"} and stored.index.equals(data.index)


def test_long_examples_are_cut(good: pd.DataFrame) -> None:
    cfg = ValidationConfig(min_rows=50, min_per_label=5, min_chars=2, max_chars=200_000)
    bad = good.copy()
    bad.loc[7, "text"] = "z" * 99_999 + "\x00"
    rep = validate_raw(bad, cfg, "bad.csv")
    text = _only_failure(rep)
    assert "z" * 80 + "… (100000 chars)" in text and "z" * 81 not in text
    for out in (rep.markdown(), rep.to_json(), str(asdict(rep))):
        assert " (100000 chars)" in out and "z" * 81 not in out
    assert json.loads(rep.to_json())["failures"][0]["examples"][0]["text"] == "z" * 80 + "… (100000 chars)"
