"""``next_batch``: new labelled data for the default corpus, one new intent per batch."""

import hashlib
import itertools
from pathlib import Path

import pandas as pd
import pytest

from intent_mlops.config.params import load_config
from intent_mlops.data.io import normalise_text
from intent_mlops.data.validation import validate_raw
from intent_mlops.demo.corpus import BATCH_PHRASINGS, BATCHES, PATTERNS, TEMPLATES, generate, next_batch

ROOT = Path(__file__).resolve().parents[2]


def _digest(df: pd.DataFrame) -> str:
    return hashlib.md5(df.to_csv(index=False).encode()).hexdigest()


def _keys(df: pd.DataFrame) -> set[str]:
    return set(normalise_text(df["text"]))


@pytest.fixture(scope="module")
def batches() -> dict[int, pd.DataFrame]:
    return {b: next_batch(b) for b in sorted(BATCHES)}


def test_at_least_three_batches_each_with_phrasings_for_every_intent() -> None:
    assert sorted(BATCHES)[:3] == [1, 2, 3]
    assert set(BATCH_PHRASINGS) == set(TEMPLATES)
    for phrasings in BATCH_PHRASINGS.values():
        assert len(phrasings) == len(BATCHES) and all(len(p) >= 2 for p in phrasings)
    for spec in BATCHES.values():
        assert not set(spec.patterns) & set(PATTERNS), "batch wrappers are reserved for batches"
        assert len(spec.new_templates) >= 12


def test_deterministic_by_batch_and_seed(batches: dict[int, pd.DataFrame]) -> None:
    assert _digest(next_batch(1)) == _digest(batches[1])
    assert _digest(next_batch(2, seed=5)) == _digest(next_batch(2, seed=5))
    assert _digest(next_batch(2, seed=5)) != _digest(batches[2])
    assert list(batches[1].columns) == ["text", "label"]


def test_no_text_of_a_batch_is_in_the_default_corpus_or_another_batch(batches: dict[int, pd.DataFrame]) -> None:
    base = _keys(generate())
    for b, df in batches.items():
        assert not _keys(df) & base, b
        assert normalise_text(df["text"]).is_unique, b
    for (a, x), (b, y) in itertools.combinations(batches.items(), 2):
        assert not _keys(x) & _keys(y), (a, b)
    other = {b: next_batch(b, per_intent=12, seed=4, typo_rate=0.3) for b in (1, 2, 3)}
    for x, y in itertools.combinations(other.values(), 2):
        assert not _keys(x) & _keys(y)


def test_exactly_one_new_intent_per_batch(batches: dict[int, pd.DataFrame]) -> None:
    news = []
    for b, df in batches.items():
        new = set(df["label"]) - set(TEMPLATES)
        assert new == {BATCHES[b].new_intent}, b
        assert set(df["label"]) == set(TEMPLATES) | new, "every base intent gets new phrasings"
        news.append(new.pop())
    assert len(set(news)) == len(news), "a different new intent in each batch"


@pytest.mark.parametrize("per_intent", [5, 30])
def test_every_label_has_per_intent_rows(per_intent: int) -> None:
    for b in BATCHES:
        counts = next_batch(b, per_intent=per_intent)["label"].value_counts()
        assert (counts == per_intent).all(), (b, counts[counts != per_intent])


def test_new_intent_is_varied(batches: dict[int, pd.DataFrame]) -> None:
    for b, df in batches.items():
        texts = df.loc[df["label"] == BATCHES[b].new_intent, "text"].str.lower()
        words = {w for t in texts for w in t.split()}
        assert len(texts) == 30 and len(words) >= 80, (b, len(words))


def test_label_noise_flips_some_labels_within_the_batch() -> None:
    clean, noisy = next_batch(1, per_intent=40), next_batch(1, per_intent=40, label_noise=0.1)
    merged = clean.merge(noisy, on="text", suffixes=("", "_noisy"))
    assert len(merged) == len(clean)
    flipped = (merged["label"] != merged["label_noisy"]).mean()
    assert 0.05 < flipped < 0.15
    assert set(noisy["label"]) <= set(clean["label"])


def test_unknown_batch_is_refused() -> None:
    with pytest.raises(ValueError, match="batch must be one of"):
        next_batch(0)
    with pytest.raises(ValueError, match="batch must be one of"):
        next_batch(max(BATCHES) + 1)


def test_default_corpus_plus_batches_passes_the_gate(batches: dict[int, pd.DataFrame]) -> None:
    """What ``data add`` gates: the current data set with the batch appended."""
    cfg = load_config(ROOT / "params.yaml").validation
    grown = pd.concat([generate(), *batches.values()], ignore_index=True)
    grown.index = pd.RangeIndex(2, len(grown) + 2, name="line")
    rep = validate_raw(grown, cfg, "intents.csv + batches")
    assert rep.success, rep.summary()
    small = pd.concat([generate(), next_batch(1, per_intent=cfg.min_per_label)], ignore_index=True)
    assert validate_raw(small, cfg, "intents.csv + small batch").success
