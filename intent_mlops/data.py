"""Reading, importing and splitting ``text,label`` CSV files.

Reading keeps the CSV line number as the frame's index, so every later error (the GX gate's
included) can point at the row a person sees in an editor.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

REQUIRED_COLUMNS = ("text", "label")
ALIASES = {"category": "label", "intent": "label", "utterance": "text", "sentence": "text"}
SPLITS = ("train", "dev", "test")


class DataError(ValueError):
    """A data file cannot be used; the message names the file and, where known, row and field."""


def read_csv(path: Path | str) -> pd.DataFrame:
    """Read a labelled CSV as text; index = 1-based line number in the file (header is line 1)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[], encoding="utf-8")
    except pd.errors.ParserError as exc:
        raise DataError(f"{path}: not a valid CSV ({exc})") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: file is empty") from None
    df.columns = [str(c).strip().lower() for c in df.columns]
    df = df.rename(columns={k: v for k, v in ALIASES.items() if k in df.columns and v not in df.columns})
    df.index = pd.RangeIndex(2, len(df) + 2, name="line")
    return df


def require_columns(df: pd.DataFrame, path: Path | str) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {missing}; found {list(df.columns)} "
            "(expected a header `text,label`; `category` is accepted for `label`)"
        )


def canonical(df: pd.DataFrame) -> pd.DataFrame:
    """Just ``text,label``, whitespace trimmed; the form written to ``data/``."""
    out = df.loc[:, list(REQUIRED_COLUMNS)].copy()
    for col in REQUIRED_COLUMNS:
        out[col] = out[col].astype(str).str.strip()
    return out


def write_csv(df: pd.DataFrame, path: Path | str) -> Path:
    """Byte-stable CSV (LF line ends, UTF-8), so equal data hashes equal in DVC."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    df.to_csv(tmp, index=False, lineterminator="\n", encoding="utf-8")
    tmp.replace(path)
    return path


def file_md5(path: Path | str) -> str:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def normalise_text(text: pd.Series) -> pd.Series:
    """Case- and space-insensitive key used for duplicate and leakage checks."""
    return text.astype(str).str.lower().str.split().str.join(" ")


@dataclass(frozen=True)
class SplitPaths:
    train: Path
    dev: Path
    test: Path

    @classmethod
    def under(cls, folder: Path | str) -> SplitPaths:
        folder = Path(folder)
        return cls(*(folder / f"{name}.csv" for name in SPLITS))

    def as_dict(self) -> dict[str, Path]:
        return {"train": self.train, "dev": self.dev, "test": self.test}


def stratified_split(df: pd.DataFrame, dev_ratio: float, test_ratio: float, seed: int) -> dict[str, pd.DataFrame]:
    """Per-label shuffled split; duplicates of one text always land in the same split.

    Every label with at least 3 distinct texts gets one in each split whose ratio is > 0, so dev
    and test cover every intent the model is trained on (``test_ratio=0`` carves only a dev set).
    """
    df = canonical(df)
    keys = normalise_text(df["text"])
    rng = np.random.default_rng(seed)
    assign = pd.Series("train", index=df.index)
    for label in sorted(df["label"].unique()):
        uniq = sorted(keys[df["label"] == label].unique())
        order = rng.permutation(len(uniq))
        n = len(uniq)
        n_test = max(1, round(n * test_ratio)) if n >= 3 and test_ratio > 0 else 0
        n_dev = max(1, round(n * dev_ratio)) if n >= 3 and dev_ratio > 0 else 0
        test_keys = {uniq[i] for i in order[:n_test]}
        dev_keys = {uniq[i] for i in order[n_test : n_test + n_dev]}
        mask = df["label"] == label
        assign[mask & keys.isin(test_keys)] = "test"
        assign[mask & keys.isin(dev_keys)] = "dev"
    return {name: df[assign == name] for name in SPLITS}


def prepare_splits(
    raw_csv: Path | str, out_dir: Path | str, dev_ratio: float, test_ratio: float, seed: int
) -> SplitPaths:
    """The ``prepare`` stage: raw CSV -> ``train/dev/test.csv`` (deterministic bytes)."""
    df = read_csv(raw_csv)
    require_columns(df, raw_csv)
    paths = SplitPaths.under(out_dir)
    for name, part in stratified_split(df, dev_ratio, test_ratio, seed).items():
        write_csv(part, getattr(paths, name))
    return paths


def load_splits(paths: SplitPaths) -> dict[str, pd.DataFrame]:
    return {name: read_csv(p) for name, p in paths.as_dict().items()}
