import hashlib

from intent_mlops.demo.corpus import TEMPLATES, generate


def _digest(df) -> str:  # type: ignore[no-untyped-def]
    return hashlib.md5(df.to_csv(index=False).encode()).hexdigest()


def test_default_corpus_shape() -> None:
    df = generate()
    assert len(df) >= 3000
    assert df["label"].nunique() >= 20
    assert df["text"].str.lower().is_unique, "one label per text"
    assert df["label"].value_counts().min() >= 100


def test_deterministic_by_seed() -> None:
    assert _digest(generate(per_intent=30, seed=5)) == _digest(generate(per_intent=30, seed=5))
    assert _digest(generate(per_intent=30, seed=5)) != _digest(generate(per_intent=30, seed=6))


def test_noise_and_typos_present() -> None:
    clean = generate(per_intent=40, label_noise=0.0, typo_rate=0.0)
    noisy = generate(per_intent=40, label_noise=0.05, typo_rate=0.2)
    vocab_clean = {w for t in clean["text"].str.lower() for w in t.split()}
    vocab_noisy = {w for t in noisy["text"].str.lower() for w in t.split()}
    assert len(vocab_noisy - vocab_clean) > 50, "typos create new word forms"


def test_intents_share_vocabulary() -> None:
    """Not trivially separable: key words occur under several intents."""
    df = generate(per_intent=60, typo_rate=0.0, label_noise=0.0)
    words = df["text"].str.lower().str.findall(r"[a-z]+")
    for word in ("order", "refund", "account", "card", "cancel", "password"):
        owners = set(df.loc[words.apply(lambda ws, w=word: w in ws), "label"])
        assert len(owners) >= 3, (word, owners)
    assert set(TEMPLATES) == set(df["label"])


def test_default_corpus_bytes_are_pinned() -> None:
    """``data.dvc`` records the default corpus: any change to ``generate`` (or to the helpers
    ``next_batch`` shares with it) that alters its output would silently re-version the data."""
    assert _digest(generate()) == "b3b863bc53ab8a7e57070e7ce2a9e95d"
