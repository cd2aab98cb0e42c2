"""Drift signals: a window of the prediction log against the champion's reference, with Evidently 0.7.

The reference is the champion's dev split with its own predictions (``text, label, intent, score,
margin, out_of_scope, ood_score``); the current window is rows of the prediction log
(:data:`intent_mlops.monitoring.log.COLUMNS`). Every statistic is one Evidently computes (its
stat tests and embedding drift methods, called on the same columns the HTML report shows), so the
numbers logged as metrics are the numbers in the report:

=====================  ===========================================================  ==================
signal                 value                                                        crossed when
=====================  ===========================================================  ==================
``intent_drift``       p-value of a two-sample chi-square test on predicted intents  value < threshold
``score_drift``        p-value of the two-sample Kolmogorov-Smirnov test             value < threshold
``ood_score_drift``    same, on ``ood_score``                                        value < threshold
``text_length_drift``  same, on the utterance length in characters                   value < threshold
``text_drift``         ROC AUC of Evidently's TF-IDF domain classifier               value > threshold
                       (``abs_text_content_drift``), on a sample of each side
``embedding_drift``    Euclidean distance between the mean pooled embeddings         value > threshold
                       (``DistanceDriftMethod``), or the domain classifier's AUC
``oos_rate``           out-of-scope rate of the window / the expected rate           value > threshold
``volume``             answers in the window                                         value < threshold
``latency_p50_ms``     median answer latency (ms)                                    value > threshold
``latency_p95_ms``     95th percentile latency (ms)                                  value > threshold
``version_share``      share of the window answered by its most frequent version     never (information)
=====================  ===========================================================  ==================

p-value tests are two-sample tests: the reference is a sample too (a few hundred dev rows), so a
large window does not turn every tiny difference into an alarm. Evidently's own ``chisquare`` test
treats the reference counts as exact (a goodness-of-fit test), which raises false alarms with a small
reference; the two-sample version is registered with Evidently as ``chi2_two_sample``.
A threshold of 0 turns a signal's alarm off (its value is still reported). Signals that cannot be
computed (no text in the log, no embeddings) are reported with ``skipped=True``, a NaN value and
the reason in ``detail``. The thresholds' defaults come from ``bench/monitoring.py`` (docs/monitoring.md).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from intent_mlops.config.params import MonitoringConfig

CHI2_TWO_SAMPLE = "chi2_two_sample"
TEXT_METHOD = "abs_text_content_drift"
EMBEDDINGS = "embedding"
P_VALUE_SIGNALS = ("intent_drift", "score_drift", "ood_score_drift", "text_length_drift")


@dataclass
class Signal:
    name: str
    value: float  # see the module table for what the value is and which way it crosses
    threshold: float | None
    crossed: bool
    detail: str  # one line for humans
    statistic: str = ""  # what ``value`` is: "p-value", "roc-auc", "distance", "ratio", "rows", "ms", "share"
    skipped: bool = False  # not computed (no text logged, no embeddings given); value is NaN

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["value"] = None if math.isnan(self.value) else self.value
        return d


@dataclass
class DriftReport:
    signals: list[Signal]
    html: str  # Evidently's HTML report ("" when built with ``html=False``)
    summary: dict[str, Any]  # JSON-able: signals, sizes, per-version shares, Evidently's own dict
    reference_rows: int
    current_rows: int
    evidently: dict[str, Any] = field(default_factory=dict)

    @property
    def crossed(self) -> list[Signal]:
        return [s for s in self.signals if s.crossed]

    def signal(self, name: str) -> Signal:
        return next(s for s in self.signals if s.name == name)


# ------------------------------------------------------------------------------------------ statistics


def _register_chi2_two_sample() -> None:
    """Register the two-sample chi-square test with Evidently (idempotent; nothing at import time)."""
    from evidently.legacy.calculations.stattests import registry
    from evidently.legacy.core import ColumnType

    if CHI2_TWO_SAMPLE in registry._registered_stat_tests:
        return

    def _chi2_two_sample(
        reference_data: pd.Series, current_data: pd.Series, feature_type: Any, threshold: float
    ) -> tuple[float, bool]:
        p = chi2_two_sample(reference_data, current_data)
        return p, p < threshold

    test = registry.StatTest(
        name=CHI2_TWO_SAMPLE,
        display_name="chi-square two-sample p_value",
        allowed_feature_types=[ColumnType.Categorical],
        default_threshold=0.05,
    )
    registry.register_stattest(test, _chi2_two_sample)


def chi2_two_sample(reference: pd.Series, current: pd.Series) -> float:
    """p-value of the chi-square test of homogeneity of two samples' category counts."""
    from scipy.stats import chi2_contingency

    ref = reference.dropna().astype(str).value_counts()
    cur = current.dropna().astype(str).value_counts()
    keys = sorted(set(ref.index) | set(cur.index))
    table = np.array([[ref.get(k, 0) for k in keys], [cur.get(k, 0) for k in keys]], dtype=float)
    if table.shape[1] < 2 or table[0].sum() == 0 or table[1].sum() == 0:
        return 1.0
    return float(chi2_contingency(table, correction=False).pvalue)


def _stattest(method: str, reference: pd.Series, current: pd.Series, kind: str, threshold: float) -> float:
    """Evidently's stat test ``method`` (what its ``ValueDrift`` metric runs), NaN/inf dropped as it does."""
    from evidently.legacy.calculations.stattests import get_stattest
    from evidently.legacy.core import ColumnType

    ctype = {"num": ColumnType.Numerical, "cat": ColumnType.Categorical, "text": ColumnType.Text}[kind]
    ref = reference.replace([-np.inf, np.inf], np.nan).dropna()
    cur = current.replace([-np.inf, np.inf], np.nan).dropna()
    test = get_stattest(ref, cur, ctype, method)
    return float(test(ref, cur, ctype, threshold).drift_score)


def _embedding_method(cfg: MonitoringConfig) -> Any:
    from evidently.metrics.embeddings import DistanceDriftMethod, ModelDriftMethod

    if cfg.embedding_drift_method == "model":
        return ModelDriftMethod(threshold=cfg.embedding_drift_threshold or 1.0)
    return DistanceDriftMethod(dist="euclidean", threshold=cfg.embedding_drift_threshold or math.inf)


def _sample(n: int, k: int, seed: int) -> np.ndarray:
    """Sorted positions of ``min(n, k)`` rows (all of them when ``k`` is 0)."""
    if k <= 0 or n <= k:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, k, replace=False))


def _emb_frame(emb: np.ndarray) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(np.asarray(emb, dtype=np.float64), columns=[f"emb_{i}" for i in range(emb.shape[1])])


def _p_signal(name: str, p: float, threshold: float, what: str) -> Signal:
    crossed = bool(threshold > 0 and p < threshold)
    return Signal(name, p, threshold, crossed, f"{what}: p = {p:.3g} ({'<' if crossed else '>='} {threshold:g})",
                  "p-value")  # fmt: skip


def _above(name: str, value: float, threshold: float, statistic: str, what: str) -> Signal:
    crossed = bool(threshold > 0 and value > threshold)
    rule = f"> {threshold:g}" if crossed else (f"<= {threshold:g}" if threshold > 0 else "no threshold")
    return Signal(name, value, threshold or None, crossed, f"{what} = {value:.4g} ({rule})", statistic)


def _skipped(name: str, threshold: float, why: str, statistic: str) -> Signal:
    return Signal(name, float("nan"), threshold or None, False, f"skipped: {why}", statistic, skipped=True)


def _texts(frame: pd.DataFrame) -> pd.Series:
    import pandas as pd

    if "text" not in frame:
        return pd.Series([], dtype=object)
    return frame["text"].dropna().astype(str)


def _prepare(frame: pd.DataFrame, text_rows: np.ndarray | None) -> pd.DataFrame:
    """The columns Evidently looks at; ``text`` kept only on the sampled rows (its tests drop nulls)."""
    import pandas as pd

    out = pd.DataFrame(
        {
            "intent": frame["intent"].astype(str).to_numpy(),
            "score": frame["score"].astype(float).to_numpy(),
            "ood_score": frame["ood_score"].astype(float).to_numpy(),
        }
    )
    text = frame["text"] if "text" in frame else pd.Series([None] * len(frame))
    out["text_length"] = text.str.len().astype(float).to_numpy()
    sampled = pd.Series([None] * len(frame), dtype=object)
    if text_rows is not None and len(text_rows):
        sampled.iloc[text_rows] = text.iloc[text_rows].astype(object).to_numpy()
    out["text"] = sampled.to_numpy()
    return out


def compute_signals(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    cfg: MonitoringConfig,
    *,
    reference_embeddings: np.ndarray | None = None,
    current_embeddings: np.ndarray | None = None,
    expected_oos_rate: float | None = None,
    seed: int = 0,
) -> tuple[list[Signal], dict[str, Any]]:
    """The signals without the HTML report (what :func:`drift_report` and the benchmark share).

    Returns the signals and the prepared frames / samples the report is built from.
    """
    if len(current) == 0:
        raise ValueError("drift_report: the current window has no rows (nothing to compare)")
    if len(reference) == 0:
        raise ValueError("drift_report: the reference has no rows")
    missing = [c for c in ("intent", "score", "ood_score") if c not in current or c not in reference]
    if missing:
        raise ValueError(f"drift_report: column {missing[0]!r} missing from the reference or the window")
    _register_chi2_two_sample()
    signals: list[Signal] = []

    p = _stattest(CHI2_TWO_SAMPLE, reference["intent"].astype(str), current["intent"].astype(str), "cat",
                  cfg.intent_drift_p)  # fmt: skip
    shares = current["intent"].astype(str).value_counts(normalize=True)
    ref_shares = reference["intent"].astype(str).value_counts(normalize=True)
    gain = (shares - ref_shares.reindex(shares.index, fill_value=0.0)).sort_values(ascending=False)
    grown = str(gain.index[0])
    top = f"; most grown: {grown} {ref_shares.get(grown, 0.0):.1%} -> {shares[grown]:.1%}"
    sig = _p_signal("intent_drift", p, cfg.intent_drift_p, "predicted-intent mix (chi-square two-sample)")
    sig.detail += top
    signals.append(sig)
    for name, column, threshold in (
        ("score_drift", "score", cfg.score_drift_p),
        ("ood_score_drift", "ood_score", cfg.ood_score_drift_p),
    ):
        p = _stattest("ks", reference[column].astype(float), current[column].astype(float), "num", threshold)
        sig = _p_signal(name, p, threshold, f"{column} distribution (KS)")
        sig.detail += f"; median {reference[column].median():.3f} -> {current[column].median():.3f}"
        signals.append(sig)

    ref_text, cur_text = _texts(reference), _texts(current)
    text_rows: dict[str, np.ndarray | None] = {"reference": None, "current": None}
    if len(cur_text) < cfg.min_text_rows or len(ref_text) < cfg.min_text_rows:
        why = (
            "the window's log holds no text (monitoring.log_text: false)"
            if len(cur_text) == 0
            else f"fewer than {cfg.min_text_rows} texts (window {len(cur_text)}, reference {len(ref_text)})"
        )
        signals.append(_skipped("text_length_drift", cfg.text_length_drift_p, why, "p-value"))
        signals.append(_skipped("text_drift", cfg.text_drift_auc, why, "roc-auc"))
    else:
        ref_len, cur_len = ref_text.str.len().astype(float), cur_text.str.len().astype(float)
        p = _stattest("ks", ref_len, cur_len, "num", cfg.text_length_drift_p)
        sig = _p_signal("text_length_drift", p, cfg.text_length_drift_p, "utterance length (KS)")
        sig.detail += f"; median {ref_len.median():.0f} -> {cur_len.median():.0f} chars"
        signals.append(sig)
        ref_pos = np.flatnonzero(reference["text"].notna().to_numpy())
        cur_pos = np.flatnonzero(current["text"].notna().to_numpy())
        ref_rows = ref_pos[_sample(len(ref_pos), cfg.text_sample, seed)]
        cur_rows = cur_pos[_sample(len(cur_pos), cfg.text_sample, seed + 1)]
        text_rows = {"reference": ref_rows, "current": cur_rows}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            auc = _stattest(TEXT_METHOD, reference["text"].iloc[ref_rows].astype(str),
                            current["text"].iloc[cur_rows].astype(str), "text", cfg.text_drift_auc or 1.0)  # fmt: skip
        signals.append(_above("text_drift", auc, cfg.text_drift_auc, "roc-auc",
                              f"TF-IDF domain classifier AUC ({len(ref_rows)} vs {len(cur_rows)} texts)"))  # fmt: skip

    emb: dict[str, pd.DataFrame] = {}
    emb_stat = "roc-auc" if cfg.embedding_drift_method == "model" else "distance"
    if (
        reference_embeddings is None
        or current_embeddings is None
        or not len(reference_embeddings)
        or not len(current_embeddings)
    ):
        signals.append(_skipped("embedding_drift", cfg.embedding_drift_threshold, "no embeddings given", emb_stat))
    else:
        r = np.asarray(reference_embeddings)[_sample(len(reference_embeddings), cfg.embedding_sample, seed + 2)]
        c = np.asarray(current_embeddings)[_sample(len(current_embeddings), cfg.embedding_sample, seed + 3)]
        emb = {"reference": _emb_frame(r), "current": _emb_frame(c)}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = float(_embedding_method(cfg)(emb["current"].copy(), emb["reference"].copy())[0])
        what = "mean-embedding distance" if emb_stat == "distance" else "embedding domain classifier AUC"
        signals.append(_above("embedding_drift", value, cfg.embedding_drift_threshold, emb_stat,
                              f"{what} ({len(r)} vs {len(c)} rows)"))  # fmt: skip

    expected = expected_oos_rate
    if expected is None:
        expected = float(reference["out_of_scope"].astype(bool).mean()) if "out_of_scope" in reference else 0.0
    floor = 1.0 / max(len(reference), 1)  # a reference without oos answers: one answer in its size
    rate = float(current["out_of_scope"].astype(bool).mean()) if "out_of_scope" in current else float("nan")
    ratio = rate / max(expected, floor)
    sig = _above("oos_rate", ratio, cfg.oos_rate_ratio, "ratio", "out-of-scope rate / expected")
    sig.detail += f"; {rate:.2%} of answers vs {expected:.2%} expected"
    signals.append(sig)

    rows = len(current)
    crossed = bool(cfg.min_volume > 0 and rows < cfg.min_volume)
    requests = current["request_id"].nunique() if "request_id" in current else rows
    signals.append(Signal("volume", float(rows), float(cfg.min_volume) or None, crossed,
                          f"{rows} answers in {requests} requests" + (f" (< {cfg.min_volume})" if crossed else ""),
                          "rows"))  # fmt: skip
    lat = current["latency_ms"].astype(float).dropna() if "latency_ms" in current else None
    for name, q, threshold in (("latency_p50_ms", 50, cfg.latency_p50_ms), ("latency_p95_ms", 95, cfg.latency_p95_ms)):
        if lat is None or not len(lat):
            signals.append(_skipped(name, threshold, "no latency in the window", "ms"))
        else:
            signals.append(_above(name, float(np.percentile(lat, q)), threshold, "ms", f"p{q} latency (ms)"))
    versions = (
        current["model_version"].astype(str).value_counts(normalize=True)
        if "model_version" in current
        else shares.iloc[:0]
    )
    if len(versions):
        detail = ", ".join(f"{v} {s:.1%}" for v, s in versions.items())
        signals.append(Signal("version_share", float(versions.iloc[0]), None, False, f"answers by version: {detail}",
                              "share"))  # fmt: skip
    extras = {
        "text_rows": text_rows,
        "embeddings": emb,
        "versions": {str(k): float(v) for k, v in versions.items()},
        "expected_oos_rate": expected,
        "oos_rate": rate,
    }
    return signals, extras


# ------------------------------------------------------------------------------------------ the report


def _evidently_report(
    reference: pd.DataFrame, current: pd.DataFrame, cfg: MonitoringConfig, extras: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    """Evidently's HTML and dict for the same statistics (a second report for the embeddings, whose
    samples are not rows of the window)."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.core.metric_types import render_widgets
    from evidently.legacy.renderers.html_widgets import group_widget
    from evidently.metrics import EmbeddingsDrift, ValueDrift

    has_text = extras["text_rows"]["current"] is not None
    ref = _prepare(reference, extras["text_rows"]["reference"])
    cur = _prepare(current, extras["text_rows"]["current"])
    numeric = ["score", "ood_score"] + (["text_length"] if has_text else [])
    definition = DataDefinition(
        numerical_columns=numeric, categorical_columns=["intent"], text_columns=["text"] if has_text else []
    )
    metrics: list[Any] = [
        ValueDrift(column="intent", method=CHI2_TWO_SAMPLE, threshold=cfg.intent_drift_p or None),
        ValueDrift(column="score", method="ks", threshold=cfg.score_drift_p or None),
        ValueDrift(column="ood_score", method="ks", threshold=cfg.ood_score_drift_p or None),
    ]
    if has_text:
        metrics += [
            ValueDrift(column="text_length", method="ks", threshold=cfg.text_length_drift_p or None),
            ValueDrift(column="text", method=TEXT_METHOD, threshold=cfg.text_drift_auc or None),
        ]
    cols = ["intent", *numeric] + (["text"] if has_text else [])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snaps = [
            Report(metrics).run(
                Dataset.from_pandas(cur[cols], data_definition=definition),
                Dataset.from_pandas(ref[cols], data_definition=definition),
            )
        ]
        emb = extras["embeddings"]
        if emb:
            names = list(emb["reference"].columns)
            emb_def = DataDefinition(numerical_columns=names, embeddings={EMBEDDINGS: names})
            snaps.append(
                Report([EmbeddingsDrift(embeddings_name=EMBEDDINGS, drift_method=_embedding_method(cfg))]).run(
                    Dataset.from_pandas(emb["current"], data_definition=emb_def),
                    Dataset.from_pandas(emb["reference"], data_definition=emb_def),
                )
            )
    # one page for both reports: the widgets Snapshot.get_html_str renders, side by side
    widgets = [w for s in snaps for w in s._widgets]
    html = render_widgets([group_widget(title="", widgets=widgets)], as_iframe=False)
    evidently = {"metrics": [m for s in snaps for m in s.dict()["metrics"]]}
    return html, evidently


def drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    cfg: MonitoringConfig,
    *,
    reference_embeddings: np.ndarray | None = None,
    current_embeddings: np.ndarray | None = None,
    expected_oos_rate: float | None = None,
    html: bool = True,
    seed: int = 0,
) -> DriftReport:
    """Signals, Evidently's HTML report and a JSON summary for one window.

    ``reference``: the champion's dev split with its predictions; ``current``: prediction log rows.
    ``*_embeddings``: pooled embeddings of a sample of each side (``Predictor.forward(texts,
    pooling="mean").embeddings``), subsampled to ``monitoring.embedding_sample`` rows.
    ``expected_oos_rate``: the out-of-scope rate of traffic like the reference (default: the
    reference's own rate, its ``oos`` rows and the calibration's false rejections together).
    Raises ValueError for an empty window or reference.
    """
    signals, extras = compute_signals(
        reference,
        current,
        cfg,
        reference_embeddings=reference_embeddings,
        current_embeddings=current_embeddings,
        expected_oos_rate=expected_oos_rate,
        seed=seed,
    )
    page, evidently = _evidently_report(reference, current, cfg, extras) if html else ("", {})
    summary: dict[str, Any] = {
        "signals": [s.to_dict() for s in signals],
        "crossed": [s.name for s in signals if s.crossed],
        "reference_rows": len(reference),
        "current_rows": len(current),
        "text_sample": {k: 0 if v is None else len(v) for k, v in extras["text_rows"].items()},
        "embedding_sample": {k: len(v) for k, v in extras["embeddings"].items()},
        "versions": extras["versions"],
        "expected_oos_rate": extras["expected_oos_rate"],
        "oos_rate": extras["oos_rate"],
        "evidently": evidently,
    }
    return DriftReport(signals, page, summary, len(reference), len(current), evidently)
