"""Train/dev/test splits of the raw data set: the ``prepare`` stage of ``dvc.yaml``.

The split is *stable across data versions*: a row's split is a function of its own normalised text
and the split seed (a hash bucket), never of the other rows, so appending data never moves an
existing row to another split, and a model trained on one version never saw rows of a later
version's dev or test set. The one exception is a deliberately small top-up for tiny labels,
described in :func:`stratified_split`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from intent_mlops.data.io import canonical, normalise_text, read_csv, require_columns, write_csv

SPLITS = ("train", "dev", "test")
# order in which the hash line [0, 1) is cut: [0, test) -> test, [test, test + dev) -> dev, rest -> train
_CUT_ORDER = ("test", "dev", "train")


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


def split_bucket(key: str, seed: int) -> float:
    """Position of one normalised text on ``[0, 1)`` under ``seed``: BLAKE2b, the same on every machine."""
    digest = hashlib.blake2b(f"{seed}\0{key}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") >> 11) / float(1 << 53)  # 53 bits: exact in a float, never 1.0


def split_intervals(dev_ratio: float, test_ratio: float) -> dict[str, tuple[float, float]]:
    """Each split's half-open slice of the hash line ``[0, 1)``."""
    if dev_ratio < 0 or test_ratio < 0 or dev_ratio + test_ratio > 1:
        raise ValueError(f"split ratios must be >= 0 with dev + test <= 1 (got dev={dev_ratio}, test={test_ratio})")
    cut = test_ratio + dev_ratio
    return {"test": (0.0, test_ratio), "dev": (test_ratio, cut), "train": (cut, 1.0)}


def _distance(u: float, interval: tuple[float, float]) -> float:
    lo, hi = interval
    if u < lo:
        return lo - u
    return u - hi if u >= hi else 0.0


def _home(u: float, intervals: dict[str, tuple[float, float]]) -> str:
    return next((name for name in _CUT_ORDER if u < intervals[name][1]), "train")  # u < 1.0: always found


def hash_split(key: str, dev_ratio: float, test_ratio: float, seed: int) -> str:
    """The split a normalised text gets from the hash alone (before any top-up of small labels)."""
    return _home(split_bucket(key, seed), split_intervals(dev_ratio, test_ratio))


def split_assignment(
    keys: pd.Series, labels: pd.Series, dev_ratio: float, test_ratio: float, seed: int
) -> tuple[dict[str, str], set[str]]:
    """``(normalised text -> split, labels that needed a top-up)``; rules in :func:`stratified_split`."""
    intervals = split_intervals(dev_ratio, test_ratio)
    wanted = [name for name in _CUT_ORDER if intervals[name][1] > intervals[name][0]]
    bucket = {key: split_bucket(key, seed) for key in sorted(set(keys))}
    where = {key: _home(u, intervals) for key, u in bucket.items()}
    topped_up: set[str] = set()
    by_label = pd.DataFrame({"key": keys.to_numpy(), "label": labels.to_numpy()}).drop_duplicates()
    for label, group in sorted(by_label.groupby("label", sort=False), key=lambda kv: str(kv[0])):
        label_keys = sorted(group["key"])
        if len(label_keys) < 3:  # too few to spread: all of it trains the model, none is scored unseen
            for key in label_keys:
                if where[key] != "train" and "train" in wanted:
                    where[key] = "train"
                    topped_up.add(str(label))
            continue
        for name in wanted:
            counts = pd.Series([where[k] for k in label_keys]).value_counts()
            if counts.get(name, 0) > 0:
                continue
            # Top-up: the text nearest to the empty split's slice, taken from a split that keeps >= 1 text.
            donors = [k for k in label_keys if counts[where[k]] >= 2]
            nearest = min(donors, key=lambda k: (_distance(bucket[k], intervals[name]), k))
            where[nearest] = name
            topped_up.add(str(label))
    return where, topped_up


def stratified_split(df: pd.DataFrame, dev_ratio: float, test_ratio: float, seed: int) -> dict[str, pd.DataFrame]:
    """Hash-bucket split, stable when rows are appended; duplicates of one text always share a split.

    A row's split depends only on its normalised text (:func:`~intent_mlops.data.io.normalise_text`)
    and ``seed``: ``u = blake2b(f"{seed}\\0{text}")`` mapped to ``[0, 1)``; ``test`` if
    ``u < test_ratio``, ``dev`` if ``u < test_ratio + dev_ratio``, else ``train``. So adding rows
    never moves an existing row, and every label's shares are binomial around the configured
    ratios (standard deviation ``sqrt(r (1 - r) / n)`` for a label of ``n`` distinct texts).

    A label with fewer than 3 distinct texts goes to ``train`` whole (as before: the model must
    know every label that dev or test contains).

    Every label with at least 3 distinct texts gets one in each split whose ratio is > 0: when
    the hash leaves such a split empty for a label, the label's text nearest to that split's slice
    of ``[0, 1)`` is moved there (deterministically, from a split that keeps at least one text).
    Top-ups only happen to labels whose hash assignment leaves a split empty, with probability
    about ``(1 - r) ** n`` for a split of ratio ``r``: 4 % for 30 texts at ``r = 0.1``, under
    1e-4 from 90 texts. Appending texts to such a small label can move its few topped-up rows
    back to their hash split; rows of labels that need no top-up before and after the append
    never move (:func:`split_assignment` returns the labels that were topped up).

    A text under two labels (a conflict the raw-data gate refuses) is placed by its key, so both
    rows land in the same split. Row order inside each split is the input's, so equal input gives
    byte-identical files.
    """
    df = canonical(df)
    keys = normalise_text(df["text"])
    where, _ = split_assignment(keys, df["label"], dev_ratio, test_ratio, seed)
    assign = keys.map(where)
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
