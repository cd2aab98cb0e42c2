"""Each GX expectation fails on one planted bad row, and the message says which row and why."""

from __future__ import annotations

import pandas as pd
import pytest

from intent_mlops.config import ValidationConfig
from intent_mlops.data import stratified_split
from intent_mlops.generate import generate
from intent_mlops.validation import ValidationError, ValidationReport, validate_raw, validate_splits

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
