"""Drift signals on small synthetic frames: no alarm on the same distribution, an alarm on a new intent."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from intent_mlops.config.params import MonitoringConfig
from intent_mlops.monitoring.drift import chi2_two_sample, compute_signals, drift_report

INTENTS = [f"intent_{i}" for i in range(10)]
WORDS = {i: [f"w{i}_{j}" for j in range(6)] for i in range(11)}


def _frame(n: int, seed: int, new_share: float = 0.0, text: bool = True) -> pd.DataFrame:
    """Rows like the reference / the log: intent i's texts use its own words; intent 10 is new and
    answered mostly as out of scope, with low scores."""
    rng = np.random.default_rng(seed)
    new = rng.random(n) < new_share
    ids = np.where(new, 10, rng.integers(0, 10, n))
    texts = [" ".join(rng.choice(WORDS[i], 4 + int(rng.integers(0, 4)))) for i in ids]
    oos = np.where(new, rng.random(n) < 0.7, rng.random(n) < 0.03)
    intent = np.where(
        oos, "out_of_scope", [INTENTS[i % 10] if i < 10 else INTENTS[int(rng.integers(0, 10))] for i in ids]
    )
    score = np.where(new, rng.beta(2, 3, n), rng.beta(8, 1, n))
    return pd.DataFrame(
        {
            "time": pd.Timestamp("2026-01-01", tz="UTC"),
            "model_version": "intent-classifier/3",
            "request_id": [f"r{i}" for i in range(n)],
            "text": texts if text else [None] * n,
            "label": [INTENTS[i] if i < 10 else "oos" for i in ids],
            "intent": intent,
            "score": score,
            "margin": score / 2,
            "out_of_scope": oos,
            "ood_score": np.where(new, rng.normal(-1, 1, n), rng.normal(1, 1, n)),
            "latency_ms": rng.gamma(4, 2.0, n),
        }
    )


def _emb(frame: pd.DataFrame, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = np.random.default_rng(99).normal(0, 1, (11, 8))
    new = frame["label"].eq("oos").to_numpy()
    idx = np.where(new, 10, [INTENTS.index(x) if x in INTENTS else 0 for x in frame["label"]])
    return centers[idx] + rng.normal(0, 1, (len(frame), 8))


def _cfg() -> MonitoringConfig:
    return MonitoringConfig(text_sample=300, embedding_sample=200, text_drift_auc=0.6, embedding_drift_threshold=0.5)


def test_same_distribution_crosses_nothing_statistical() -> None:
    ref, cur = _frame(600, 1), _frame(1000, 2)
    signals, _ = compute_signals(ref, cur, _cfg(), reference_embeddings=_emb(ref, 3), current_embeddings=_emb(cur, 4))
    by = {s.name: s for s in signals}
    for name in ("intent_drift", "score_drift", "ood_score_drift", "text_length_drift", "oos_rate"):
        assert not by[name].crossed, by[name].detail
    assert by["intent_drift"].statistic == "p-value" and 0 <= by["intent_drift"].value <= 1


def test_new_intent_at_30_percent_is_detected() -> None:
    ref, cur = _frame(600, 1), _frame(1000, 2, new_share=0.3)
    report = drift_report(ref, cur, _cfg(), reference_embeddings=_emb(ref, 3), current_embeddings=_emb(cur, 4),
                          html=False)  # fmt: skip
    crossed = {s.name for s in report.crossed}
    assert {"intent_drift", "score_drift", "ood_score_drift", "oos_rate", "text_drift", "embedding_drift"} <= crossed
    assert report.signal("oos_rate").value > 2
    assert report.current_rows == 1000 and report.reference_rows == 600


def test_text_not_logged_skips_text_signals_cleanly() -> None:
    ref, cur = _frame(300, 1), _frame(300, 2, new_share=0.3, text=False)
    report = drift_report(ref, cur, _cfg())
    for name in ("text_drift", "text_length_drift"):
        s = report.signal(name)
        assert s.skipped and math.isnan(s.value) and not s.crossed and "log_text" in s.detail
    assert report.signal("embedding_drift").skipped
    assert report.signal("intent_drift").crossed  # the rest still works, and the HTML is built without text
    assert "<html" in report.html.lower()
    assert report.summary["signals"][0]["name"] == "intent_drift"


def test_empty_window_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="no rows"):
        drift_report(_frame(100, 1), _frame(100, 2).iloc[:0], _cfg())


def test_report_matches_evidently_and_is_json() -> None:
    """The signals are the numbers in Evidently's own report (same tests, same samples)."""
    import json

    ref, cur = _frame(300, 1), _frame(400, 2, new_share=0.2)
    report = drift_report(
        ref, cur, _cfg(), reference_embeddings=_emb(ref, 3)[:60], current_embeddings=_emb(cur, 4)[:60]
    )
    values = [m["value"] for m in report.summary["evidently"]["metrics"]]
    ours = [report.signal(n).value for n in ("intent_drift", "score_drift", "ood_score_drift", "text_length_drift",
                                            "text_drift", "embedding_drift")]  # fmt: skip
    assert values == pytest.approx(ours)
    json.dumps(report.summary)
    assert report.summary["versions"] == {"intent-classifier/3": 1.0}
    assert "Drift in embeddings" in report.html or "embedding" in report.html


def test_thresholds_zero_turn_alarms_off_and_volume_latency() -> None:
    ref, cur = _frame(300, 1), _frame(300, 2, new_share=0.5)
    cfg = MonitoringConfig(intent_drift_p=0, score_drift_p=0, ood_score_drift_p=0, text_length_drift_p=0,
                           text_drift_auc=0, oos_rate_ratio=0, min_volume=1000, latency_p95_ms=1.0)  # fmt: skip
    signals, _ = compute_signals(ref, cur, cfg)
    crossed = {s.name for s in signals if s.crossed}
    assert crossed == {"volume", "latency_p95_ms"}


def test_chi2_two_sample() -> None:
    a = pd.Series(["a"] * 50 + ["b"] * 50)
    assert chi2_two_sample(a, a) == pytest.approx(1.0)
    assert chi2_two_sample(a, pd.Series(["a"] * 90 + ["c"] * 10)) < 1e-6
    assert chi2_two_sample(a, pd.Series(["a"])) <= 1.0
