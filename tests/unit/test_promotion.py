"""Champion/challenger policy on hand-built dev predictions: every criterion can refuse on its own."""

from __future__ import annotations

import json
import time
from fractions import Fraction
from math import comb
from typing import Any

import numpy as np
import pytest

from intent_mlops.evaluation.metrics import report
from intent_mlops.registry.promotion import (
    TAG_KEYS,
    Decision,
    binomial_tail_half,
    decide,
    macro_f1,
    mcnemar,
    paired_bootstrap,
)

INTENTS = ["balance", "card_lost", "transfer", "exchange_rate", "top_up"]
CRITERIA = ["min_delta", "significance", "no_intent_regression", "min_macro_f1"]


def _cfg(**kw: Any) -> Any:
    from intent_mlops.config.params import PromotionConfig  # the one line to edit if the config module moves

    return PromotionConfig(**kw)


def _dev(
    intents: list[str], per_intent: int, champion_wrong: int, challenger_wrong: int
) -> tuple[list[str], list[str], list[str]]:
    """Per intent, rows j with j % 20 < *_wrong are predicted as the next intent (challenger errors are a subset)."""
    y, champ, chall = [], [], []
    for i, name in enumerate(intents):
        other = intents[(i + 1) % len(intents)]
        for j in range(per_intent):
            y.append(name)
            champ.append(other if j % 20 < champion_wrong else name)
            chall.append(other if j % 20 < challenger_wrong else name)
    return y, champ, chall


def _decide(y: list[str], champ: list[str] | None, chall: list[str], **kw: Any) -> Decision:
    labels, mine = kw.pop("champion_labels", None), kw.pop("challenger_labels", None)
    return decide(y, champ, chall, _cfg(**kw), champion_version="1", challenger_version="2", champion_labels=labels,
                  challenger_labels=mine)  # fmt: skip


def _failed(d: Decision) -> list[str]:
    return [c.name for c in d.criteria if not c.passed]


@pytest.fixture(scope="module")
def better() -> tuple[list[str], list[str], list[str]]:
    """300 dev rows: champion 70 % right, challenger 95 % right (never wrong where the champion is right)."""
    return _dev(INTENTS, 60, champion_wrong=6, challenger_wrong=1)


@pytest.mark.parametrize("test", ["bootstrap", "mcnemar"])
def test_clearly_better_challenger_is_promoted(better: tuple[list[str], list[str], list[str]], test: str) -> None:
    d = _decide(*better, significance_test=test)
    assert d.promoted and d.decision == "promoted", d.reason
    assert [c.name for c in d.criteria] == CRITERIA and _failed(d) == []
    assert d.gain is not None and d.gain > 0.2
    assert d.gain == pytest.approx(d.challenger_macro_f1 - (d.champion_macro_f1 or 0.0))
    assert d.p_value is not None and d.p_value < 0.05
    assert d.ci_low is not None and d.ci_high is not None and 0 < d.ci_low < d.gain < d.ci_high
    assert d.test == test and d.n_examples == 300 and d.compared_rows == 300 and d.new_intents == []
    assert d.reason.startswith("promoted")


def test_refused_by_min_delta_alone(better: tuple[list[str], list[str], list[str]]) -> None:
    d = _decide(*better, min_delta=0.5)
    assert not d.promoted and _failed(d) == ["min_delta"]
    assert "min_delta" in d.reason


@pytest.mark.parametrize("test", ["bootstrap", "mcnemar"])
def test_large_gain_on_tiny_dev_set_is_not_significant(test: str) -> None:
    y = ["a", "a", "b", "b", "c", "c", "d", "d"]
    champ = ["b", "a", "a", "b", "c", "c", "d", "d"]  # 2 errors: macro-F1 0.75
    d = _decide(y, champ, list(y), significance_test=test, small_dev="refuse")  # challenger perfect: gain +0.25
    assert d.gain == pytest.approx(0.25) and d.kind == "small-dev"
    assert not d.promoted and _failed(d) == ["significance"], d.reason
    if test == "bootstrap":  # (6/8)^8 ~ 10 % of resamples miss both discordant rows: the 5 % quantile is 0
        assert d.ci_low == 0.0
    else:
        assert d.p_value == pytest.approx(0.25)  # b=0, c=2: P(X >= 2 | n=2) = 1/4


def test_refused_when_one_supported_intent_collapses() -> None:
    names = ["balance", "card_lost", "transfer", "exchange_rate", "top_up", "refund", "pin_change", "atm"]
    y, champ, _ = _dev(names, 50, champion_wrong=4, challenger_wrong=0)  # champion: 38 of 50 right per intent
    chall = list(y)
    for j in range(30):
        chall[j] = "card_lost"  # 30 of 50 "balance" rows wrong: recall 0.4 (champion 0.76)
    d = _decide(y, champ, chall)
    assert d.gain is not None and d.gain > 0.05 and d.ci_low is not None and d.ci_low > 0
    assert not d.promoted and _failed(d) == ["no_intent_regression"], d.reason
    crit = d.criteria[2]
    assert "balance" in crit.detail and "recall 0.760->0.400" in crit.detail and "card_lost (" not in crit.detail
    assert crit.value == pytest.approx(0.36)  # the worst drop: recall 0.76 -> 0.40
    assert d.per_intent[0]["intent"] == "balance"  # table sorted by delta F1, worst first
    assert _decide(y, champ, chall, min_support=51).promoted  # too few examples to be checked: no veto


def test_refused_by_absolute_floor_alone(better: tuple[list[str], list[str], list[str]]) -> None:
    d = _decide(*better, min_macro_f1=0.99)
    assert not d.promoted and _failed(d) == ["min_macro_f1"]
    assert d.criteria[3].value == pytest.approx(d.challenger_macro_f1) and d.criteria[3].threshold == 0.99


@pytest.mark.parametrize("test", ["bootstrap", "mcnemar"])
def test_tie_is_refused(better: tuple[list[str], list[str], list[str]], test: str) -> None:
    y, champ, _ = better
    d = _decide(y, champ, list(champ), significance_test=test)
    assert d.gain == 0.0 and not d.promoted
    assert _failed(d) == ["significance"]  # gain 0 >= min_delta 0, but 0 is not > 0


@pytest.mark.parametrize(("floor", "promoted"), [(0.5, True), (0.99, False)])
def test_without_champion_only_the_floor_decides(
    better: tuple[list[str], list[str], list[str]], floor: float, promoted: bool
) -> None:
    y, _, chall = better
    d = decide(y, None, chall, _cfg(min_macro_f1=floor, min_delta=0.9), champion_version=None, challenger_version="1")
    assert d.promoted is promoted
    assert [c.name for c in d.criteria] == ["min_macro_f1"]
    assert d.gain is None and d.champion_macro_f1 is None and d.test == "none"
    assert d.tags()["promotion.champion_version"] == "none" and d.tags()["promotion.gain"] == "none"
    assert all(row["champion_f1"] is None for row in d.per_intent)


def test_new_intent_is_reported_and_not_held_against_the_challenger(
    better: tuple[list[str], list[str], list[str]],
) -> None:
    y, champ, chall = (list(v) for v in better)
    base = _decide(y, champ, chall, champion_labels=INTENTS)
    for j in range(40):  # 40 rows of an intent only the challenger knows; it gets just 10 of them right
        y.append("new_intent")
        champ.append("balance")  # the champion cannot predict it
        chall.append("new_intent" if j < 10 else "card_lost")
    d = _decide(y, champ, chall, champion_labels=INTENTS)
    assert d.new_intents == ["new_intent"] and d.promoted, d.reason
    assert d.compared_rows == 300 and d.n_examples == 340
    assert d.gain == pytest.approx(base.gain) and d.ci_low == pytest.approx(base.ci_low)  # new rows left out
    assert "300 of 340 rows" in d.criteria[0].detail
    names = [*INTENTS, "new_intent"]
    floor = report([names.index(t) for t in y], [names.index(p) for p in chall], names)
    assert d.criteria[3].value == pytest.approx(floor.macro_f1)  # the floor uses every row
    assert "new_intent" not in d.criteria[2].detail
    row = next(r for r in d.per_intent if r["intent"] == "new_intent")
    assert row["champion_f1"] is None and row["challenger_recall"] == pytest.approx(0.25) and row["support"] == 40
    unknown_labels = _decide(y, champ, chall)  # without the champion's label set nothing is new
    assert unknown_labels.new_intents == [] and unknown_labels.compared_rows == 340


def test_macro_f1_matches_report() -> None:
    rng = np.random.default_rng(3)
    y_true, y_pred = rng.integers(0, 9, 400), rng.integers(0, 10, 400)  # label 9 is only ever predicted
    rep = report(y_true, y_pred, [str(i) for i in range(12)])
    assert macro_f1(y_true, y_pred, 12) == pytest.approx(rep.macro_f1)
    mask = np.ones(12, dtype=bool)
    mask[9] = False
    expected = np.mean([rep.per_label[str(i)]["f1"] for i in range(9)])
    assert macro_f1(y_true, y_pred, 12, average_over=mask) == pytest.approx(expected)
    assert macro_f1(np.array([], dtype=int), np.array([], dtype=int), 3) == 0.0


def _random_pair(n: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    champ = np.where(rng.random(n) < 0.75, y, rng.integers(0, k, n))
    chall = np.where(rng.random(n) < 0.80, y, rng.integers(0, k, n))
    return y, champ, chall


def test_bootstrap_is_reproducible_by_seed() -> None:
    y, champ, chall = _random_pair(500, 10, 0)
    a = paired_bootstrap(y, champ, chall, 10, resamples=1000, confidence=0.95, seed=7)
    b = paired_bootstrap(y, champ, chall, 10, resamples=1000, confidence=0.95, seed=7)
    c = paired_bootstrap(y, champ, chall, 10, resamples=1000, confidence=0.95, seed=8)
    assert a == b
    assert c.gain == a.gain  # the observed gain does not depend on the resamples
    assert (c.low, c.high, c.p_value) != (a.low, a.high, a.p_value)
    assert c.low == pytest.approx(a.low, abs=0.015) and c.high == pytest.approx(a.high, abs=0.015)
    assert a.low < a.gain < a.high and a.method == "bootstrap" and a.resamples == 1000


def test_bootstrap_is_vectorised() -> None:
    y, champ, chall = _random_pair(1000, 80, 1)
    start = time.perf_counter()
    interval = paired_bootstrap(y, champ, chall, 80, resamples=2000, confidence=0.95, seed=0)
    assert time.perf_counter() - start < 3.0  # well under a second unloaded; generous for a shared CI box
    assert interval.low < interval.gain < interval.high


def test_mcnemar_matches_the_exact_binomial_tail() -> None:
    # 5 both right, 2 champion-only right (b), 9 challenger-only right (c), 3 both wrong
    y = ["a"] * 19
    champ = ["a"] * 5 + ["a"] * 2 + ["x"] * 9 + ["x"] * 3
    chall = ["a"] * 5 + ["x"] * 2 + ["a"] * 9 + ["x"] * 3
    res = mcnemar(y, champ, chall)
    assert (res.b, res.c, res.n) == (2, 9, 11)
    assert res.p_value == pytest.approx((55 + 11 + 1) / 2048, rel=1e-12)  # C(11,9)+C(11,10)+C(11,11) over 2^11
    assert res.significant  # 0.0327 < 0.05 and c > b
    assert not mcnemar(y, chall, champ).significant  # reversed: c < b
    assert mcnemar(y, chall, champ).p_value == pytest.approx(1 - (1 + 11) / 2048)
    assert not mcnemar(y, champ, chall, confidence=0.99).significant
    n = 3001  # exact for thousands of discordant pairs, no overflow
    exact = Fraction(sum(comb(n, j) for j in range(1560, n + 1)), 2**n)
    assert binomial_tail_half(n, 1560) == pytest.approx(float(exact), rel=1e-12)
    assert binomial_tail_half(0, 0) == 1.0 and binomial_tail_half(4, 5) == 0.0


def test_tags_markdown_and_json(better: tuple[list[str], list[str], list[str]]) -> None:
    d = _decide(*better, min_macro_f1=0.99)
    tags = d.tags()
    assert tuple(tags) == TAG_KEYS
    assert set(tags) == {
        "promotion.decision",
        "promotion.reason",
        "promotion.champion_version",
        "promotion.challenger_version",
        "promotion.gain",
        "promotion.ci_low",
        "promotion.ci_high",
        "promotion.p_value",
        "promotion.test",
        "promotion.excluded_rows",
        "promotion.kind",
    }
    assert all(isinstance(v, str) for v in tags.values())
    assert tags["promotion.decision"] == "refused" and tags["promotion.gain"] == f"{d.gain:.4f}"
    assert tags["promotion.champion_version"] == "1" and tags["promotion.excluded_rows"] == "0"
    long = Decision(**{**d.to_dict(), "reason": "x" * 900, "criteria": d.criteria})
    assert len(long.tags()["promotion.reason"]) == 500
    md = d.markdown()
    for name in CRITERIA:
        assert f"| {name} |" in md
    assert "REFUSED" in md and "v2" in md and "v1" in md and "balance" in md
    payload = json.loads(d.to_json())
    assert payload["decision"] == "refused" and [c["name"] for c in payload["criteria"]] == CRITERIA
    assert payload["config"]["min_macro_f1"] == 0.99 and len(payload["per_intent"]) == len(INTENTS)


# ------------------------------------------------------------------ one label set for both models


def _removed_intent_dev(seed: int, per_intent: int = 50) -> tuple[list[str], list[str], list[str]]:
    """8 current intents; the champion errs only by predicting ``closed_intent`` (removed from the data),
    the challenger is wrong on those rows and on a few more: it is right on a strict subset of the champion's rows."""
    rng = np.random.default_rng(seed)
    names = ["balance", "card_lost", "transfer", "exchange_rate", "top_up", "refund", "pin_change", "atm"]
    y = [name for name in names for _ in range(per_intent)]
    champ, chall = list(y), list(y)
    n = len(y)
    champion_wrong = rng.choice(n, size=int(rng.integers(5, 30)), replace=False)
    for i in champion_wrong:
        champ[i] = "closed_intent"
        chall[i] = names[(names.index(y[i]) + 1) % len(names)]
    extra = rng.choice(np.setdiff1d(np.arange(n), champion_wrong), size=int(rng.integers(1, 4)), replace=False)
    for i in extra:
        chall[i] = names[(names.index(y[i]) + 1 + int(rng.integers(0, 6))) % len(names)]
    return y, champ, chall


@pytest.mark.parametrize("test", ["bootstrap", "mcnemar"])
def test_champion_predicting_a_removed_intent_is_compared_on_the_same_labels(test: str) -> None:
    y, champ, chall = _removed_intent_dev(seed=0)
    current = sorted(set(y))
    d = _decide(y, champ, chall, champion_labels=[*current, "closed_intent"], significance_test=test)
    assert not d.promoted, d.reason
    names = [*current, "closed_intent"]
    enc = {n: i for i, n in enumerate(names)}
    yt, pc, ph = (np.array([enc[v] for v in xs]) for xs in (y, champ, chall))
    same = np.array([n != "closed_intent" for n in names])  # one label set: the intents of the data
    assert d.champion_macro_f1 == pytest.approx(macro_f1(yt, pc, len(names), average_over=same))
    assert d.challenger_macro_f1 == pytest.approx(macro_f1(yt, ph, len(names), average_over=same))
    assert d.gain is not None and d.gain < 0  # a prediction of a removed intent is only an error
    assert "closed_intent" not in {r["intent"] for r in d.per_intent}


def test_challenger_right_on_a_strict_subset_is_never_promoted() -> None:
    for seed in range(12):
        y, champ, chall = _removed_intent_dev(seed)
        d = decide(y, champ, chall, _cfg(bootstrap_resamples=500), champion_version="1", challenger_version="2",
                   champion_labels=[*sorted(set(y)), "closed_intent"])  # fmt: skip
        assert not d.promoted and d.gain is not None and d.gain <= 0, (seed, d.reason)
        assert d.ci_high is not None and d.ci_high <= 0, seed  # no resample favours the challenger


# ------------------------------------------------------------------------- a new label space

DEMO = ["balance", "card_lost", "transfer", "exchange_rate", "top_up", "refund", "pin_change", "atm",
        "double_charge", "speak_to_human", "cancel_order", "track_order", "store_hours", "reset_password"]  # fmt: skip
MINE = ["balance", "card_lost", "transfer", "exchange_rate", "loan_rate", "mortgage"]


def _own_csv_dev() -> tuple[list[str], list[str], list[str]]:
    """2 dev rows per intent of MINE; the demo champion answers with its own intents, the new model is good."""
    y = [name for name in MINE for _ in range(2)]
    champ = [name if name in DEMO else "double_charge" for name in y]
    champ[0] = "speak_to_human"
    chall = list(y)
    chall[-1] = "loan_rate"
    return y, champ, chall


def test_new_label_space_is_decided_by_the_floor_and_says_so() -> None:
    y, champ, chall = _own_csv_dev()
    d = _decide(y, champ, chall, champion_labels=DEMO, challenger_labels=MINE)
    assert d.kind == "new-label-space" and d.promoted, d.reason
    assert [c.name for c in d.criteria] == ["min_macro_f1"] and d.gain is None and d.test == "none"
    assert "new label space" in d.reason and "4 of 16 intents" in d.reason and "v1" in d.reason
    assert d.tags()["promotion.kind"] == "new-label-space"
    assert "new-label-space" in d.markdown()
    refused = _decide(y, champ, chall, champion_labels=DEMO, challenger_labels=MINE, min_macro_f1=0.99)
    assert refused.kind == "new-label-space" and not refused.promoted and "(min_macro_f1)" in refused.reason


def test_a_few_new_intents_are_still_a_comparison(better: tuple[list[str], list[str], list[str]]) -> None:
    y, champ, chall = better
    d = _decide(y, champ, chall, champion_labels=INTENTS[:3] + ["atm"], challenger_labels=INTENTS)
    assert d.kind == "comparison" and len(d.criteria) == 4  # 3 of 6 intents shared: half is enough
    assert d.tags()["promotion.kind"] == "comparison"
    first = decide(y, None, chall, _cfg(), champion_version=None, challenger_version="1")
    assert first.kind == "first-model" and first.tags()["promotion.kind"] == "first-model"


# ---------------------------------------------------------------------------- a tiny dev split


def _tiny(n: int, champion_wrong: int) -> tuple[list[str], list[str], list[str]]:
    """n dev rows over 2 intents; the champion is wrong on the first ``champion_wrong``, the challenger on none."""
    y = ["a" if i % 2 else "b" for i in range(n)]
    champ = [("b" if t == "a" else "a") if i < champion_wrong else t for i, t in enumerate(y)]
    return y, champ, list(y)


@pytest.mark.parametrize(
    ("test", "n", "wrong", "needed"),
    [("bootstrap", 14, 2, 20), ("bootstrap", 5, 1, 14), ("mcnemar", 10, 3, 17), ("mcnemar", 14, 4, 18)],
)
def test_tiny_dev_split_is_not_testable_and_says_what_it_needs(test: str, n: int, wrong: int, needed: int) -> None:
    y, champ, chall = _tiny(n, wrong)
    d = _decide(y, champ, chall, significance_test=test, min_support=100)
    assert d.kind == "small-dev" and d.promoted, d.reason  # default small_dev: delta_only
    assert f"{n} dev rows" in d.reason and f"needs at least {needed}" in d.reason
    assert [c.name for c in d.criteria] == CRITERIA and d.tags()["promotion.kind"] == "small-dev"
    refused = _decide(y, champ, chall, significance_test=test, small_dev="refuse")
    assert refused.kind == "small-dev" and not refused.promoted and f"needs at least {needed}" in refused.reason
    tie = _decide(y, champ, list(champ), significance_test=test)
    assert tie.kind == "small-dev" and not tie.promoted  # not testable: a tie still never replaces the champion


@pytest.mark.parametrize(("test", "n", "wrong"), [("bootstrap", 15, 3), ("mcnemar", 17, 5)])
def test_at_the_computed_size_the_test_decides(test: str, n: int, wrong: int) -> None:
    """The sizes the message names are exact: the same error rate on that many rows is testable."""
    y, champ, chall = _tiny(n, wrong)
    d = _decide(y, champ, chall, significance_test=test)
    assert d.kind == "comparison" and d.promoted, d.reason
    y, champ, chall = _tiny(n - (n // wrong), wrong - 1)  # one error (and its share of rows) fewer: not testable
    assert _decide(y, champ, chall, significance_test=test).kind == "small-dev"


@pytest.mark.parametrize("test", ["bootstrap", "mcnemar"])
def test_untestable_gain_on_a_nearly_perfect_champion_needs_dominance(test: str) -> None:
    """500 dev rows and a champion wrong on 2 are not testable either; a challenger that fixes those 2
    and breaks 1 other row has a positive gain on noise and must not replace the champion."""
    y, champ, chall = _tiny(500, 2)
    chall[10] = "b" if y[10] == "a" else "a"  # one row the champion gets right, now wrong
    d = _decide(y, champ, chall, significance_test=test, min_support=1000)
    assert d.kind == "small-dev" and d.gain is not None and d.gain > 0, d.reason
    assert not d.promoted and "champion-only right: 1" in d.reason, d.reason
    clean = _decide(y, champ, _tiny(500, 2)[2], significance_test=test, min_support=1000)
    assert clean.kind == "small-dev" and clean.promoted, clean.reason  # fixes both, loses none


def test_small_dev_with_approval_goes_to_a_person() -> None:
    from intent_mlops.registry.promotion import needs_approval

    y, champ, chall = _tiny(14, 2)
    cfg = _cfg(small_dev="approval")
    d = decide(y, champ, chall, cfg, champion_version="1", challenger_version="2")
    assert d.kind == "small-dev" and d.promoted and needs_approval(d, cfg)
    assert not needs_approval(d, _cfg()) and needs_approval(d, _cfg(require_approval=True))
    normal = decide(*_dev(INTENTS, 60, 6, 1), cfg, champion_version="1", challenger_version="2")
    assert normal.kind == "comparison" and not needs_approval(normal, cfg)
