"""Champion/challenger promotion policy: pure numbers in, a reasoned decision out.

No Prefect and no MLflow here, so the policy is unit-testable with hand-built predictions and
the flow only has to feed it dev-set predictions and write ``Decision.tags()`` onto the version.
A challenger is promoted only when every criterion passes:

(a) ``min_delta``: its dev macro-F1 gain over the champion reaches ``min_delta``;
(b) ``significance``: the gain is not noise (paired bootstrap lower bound > 0, or exact McNemar);
(c) ``no_intent_regression``: no well-supported intent loses more than ``max_intent_drop`` F1 or recall;
(d) ``min_macro_f1``: its own dev macro-F1 reaches an absolute floor (alone decides without a champion).

(a)-(c) are skipped (the floor alone decides, kind ``new-label-space``) when the two models share under
half of the intents either knows: a comparison on the few shared intents says nothing about a model for
another label space. (b) is "not testable" (kind ``small-dev``) when even a perfect challenger could not
pass the configured test on these rows; ``small_dev`` then says what decides.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np

from intent_mlops.evaluation.metrics import report

_EPS = 1e-12  # float slack so that a gain of exactly min_delta is not refused by rounding
_CHUNK_CELLS = 4_000_000  # resamples x examples per bootstrap block: bounds memory on large dev sets
TAG_KEYS = (
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
)
POLICY_FIELDS = (
    "min_delta",
    "significance_test",
    "confidence",
    "bootstrap_resamples",
    "seed",
    "min_support",
    "max_intent_drop",
    "min_macro_f1",
    "require_approval",
    "approval_timeout_seconds",
    "small_dev",
)


class PromotionPolicy(Protocol):
    """What ``decide`` reads; ``PromotionConfig`` (``intent_mlops.config.params``) is one, any look-alike works."""

    min_delta: float
    significance_test: str
    confidence: float
    bootstrap_resamples: int
    seed: int
    min_support: int
    max_intent_drop: float
    min_macro_f1: float
    require_approval: bool
    approval_timeout_seconds: int
    small_dev: str


# --------------------------------------------------------------------------------------------- metrics


def _macro_from_counts(tp: np.ndarray, support: np.ndarray, predicted: np.ndarray, labels: np.ndarray | None) -> Any:
    """Macro-F1 along the last axis; F1 = 2TP / (support + predicted) equals 2PR / (P + R), 0 when undefined.

    ``labels=None``: the labels present in truth or prediction (one model's score, ``report``'s
    convention). A mask: the labels in it that occur in the truth, which depends on the rows only, so
    two models scored on the same rows average over one and the same label set.
    """
    denom = support + predicted
    f1 = np.divide(2.0 * tp, denom, out=np.zeros(tp.shape, dtype=float), where=denom > 0)
    present = denom > 0 if labels is None else (support > 0) & labels
    count = present.sum(axis=-1)
    total = (f1 * present).sum(axis=-1)
    return np.divide(total, count, out=np.zeros(np.shape(total), dtype=float), where=count > 0)


def _all_labels(n_labels: int, average_over: np.ndarray | None) -> np.ndarray:
    if average_over is None:
        return np.ones(n_labels, dtype=bool)
    mask = np.asarray(average_over, dtype=bool)
    if mask.shape != (n_labels,):
        raise ValueError(f"average_over must be a boolean mask of {n_labels} labels, got shape {mask.shape}")
    return mask


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_labels: int, *, average_over: np.ndarray | None = None) -> float:
    """Macro-F1 over labels present in ``y_true`` or ``y_pred``, the convention of ``evaluation.metrics.report``.

    ``average_over`` (boolean mask of labels) makes it a comparison's score: the average runs over the
    labels of the mask that occur in ``y_true``, the same set for every model scored on these rows. A
    prediction outside it (an intent removed from the data) is only an error: it costs the true label's
    recall and adds no label at F1 0 to one model's average alone.
    """
    yt, yp = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    mask = None if average_over is None else _all_labels(n_labels, average_over)
    tp = np.bincount(yt[yt == yp], minlength=n_labels)
    support = np.bincount(yt, minlength=n_labels)
    predicted = np.bincount(yp, minlength=n_labels)
    return float(_macro_from_counts(tp, support, predicted, mask))


def _resampled_macro_f1(
    y_true: np.ndarray, y_pred: np.ndarray, idx: np.ndarray, n_labels: int, mask: np.ndarray
) -> np.ndarray:
    """Macro-F1 of every resample (rows of ``idx``) at once: per-(resample, label) counts from one bincount each."""
    r = idx.shape[0]
    offset = (np.arange(r, dtype=np.int64) * n_labels)[:, None]
    yt, yp = y_true[idx], y_pred[idx]
    size = r * n_labels
    support = np.bincount((offset + yt).ravel(), minlength=size).reshape(r, n_labels)
    predicted = np.bincount((offset + yp).ravel(), minlength=size).reshape(r, n_labels)
    hit = (yt == yp).ravel()
    tp = np.bincount((offset + yt).ravel()[hit], minlength=size).reshape(r, n_labels)
    return np.asarray(_macro_from_counts(tp, support, predicted, mask))


# ---------------------------------------------------------------------------------- significance tests


@dataclass(frozen=True)
class Interval:
    """Paired bootstrap of the macro-F1 gain (challenger - champion)."""

    gain: float  # observed gain on the full sample
    low: float  # one-sided lower bound at `confidence`: the (1 - confidence) quantile of resampled gains
    high: float  # the `confidence` quantile, shown for symmetry; not used to decide
    p_value: float  # fraction of resampled gains <= 0
    resamples: int
    method: str = "bootstrap"
    confidence: float = 0.95


def paired_bootstrap(
    y_true: np.ndarray,
    pred_champion: np.ndarray,
    pred_challenger: np.ndarray,
    n_labels: int,
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    *,
    average_over: np.ndarray | None = None,
) -> Interval:
    """Resample dev examples with replacement, the same indices for both models (paired), seeded.

    Pairing removes the between-example variance both models share, so a real gain is detected
    on a dev set where two separate intervals would overlap. Both models' macro-F1 of a resample
    average over the same labels (``macro_f1`` with a mask: those of ``average_over`` in its truth).
    """
    yt = np.asarray(y_true, dtype=np.int64)
    champ, chall = np.asarray(pred_champion, dtype=np.int64), np.asarray(pred_challenger, dtype=np.int64)
    n = len(yt)
    if n == 0 or len(champ) != n or len(chall) != n:
        raise ValueError(f"need equally long, non-empty label arrays, got {n}, {len(champ)}, {len(chall)}")
    if resamples < 1 or not 0.0 < confidence < 1.0:
        raise ValueError("resamples must be >= 1 and confidence in (0, 1)")
    mask = _all_labels(n_labels, average_over)
    rng = np.random.default_rng(seed)
    block = max(1, _CHUNK_CELLS // n)
    gains: list[np.ndarray] = []
    for start in range(0, resamples, block):
        idx = rng.integers(0, n, size=(min(block, resamples - start), n))
        gains.append(
            _resampled_macro_f1(yt, chall, idx, n_labels, mask) - _resampled_macro_f1(yt, champ, idx, n_labels, mask)
        )
    g = np.concatenate(gains)
    observed = macro_f1(yt, chall, n_labels, average_over=mask) - macro_f1(yt, champ, n_labels, average_over=mask)
    return Interval(
        gain=float(observed),
        low=float(np.quantile(g, 1.0 - confidence)),
        high=float(np.quantile(g, confidence)),
        p_value=float(np.mean(g <= 0.0)),
        resamples=int(resamples),
        confidence=float(confidence),
    )


@dataclass(frozen=True)
class McNemarResult:
    """Exact one-sided McNemar test on the discordant pairs."""

    b: int  # champion right, challenger wrong
    c: int  # champion wrong, challenger right
    p_value: float  # P(X >= c) for X ~ Binomial(b + c, 1/2)
    significant: bool  # p_value < 1 - confidence and c > b
    confidence: float = 0.95

    @property
    def n(self) -> int:
        return self.b + self.c


def binomial_tail_half(n: int, k: int) -> float:
    """Exact P(X >= k) for X ~ Binomial(n, 1/2), in integers (no scipy, no normal approximation)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    term = math.comb(n, k)
    total = 0
    for j in range(k, n + 1):  # C(n, j+1) = C(n, j) (n - j) / (j + 1), exact in integers
        total += term
        term = term * (n - j) // (j + 1)
    return total / (1 << n)  # int / int is correctly rounded, even for thousands of pairs


def mcnemar(
    y_true: np.ndarray | Sequence[Any],
    pred_champion: np.ndarray | Sequence[Any],
    pred_challenger: np.ndarray | Sequence[Any],
    confidence: float = 0.95,
) -> McNemarResult:
    """Only examples where exactly one model is right carry evidence; under H0 either way is a coin flip."""
    yt, champ, chall = np.asarray(y_true), np.asarray(pred_champion), np.asarray(pred_challenger)
    if not len(yt) == len(champ) == len(chall):
        raise ValueError(f"need equally long label arrays, got {len(yt)}, {len(champ)}, {len(chall)}")
    ok_champ, ok_chall = champ == yt, chall == yt
    b = int(np.sum(ok_champ & ~ok_chall))
    c = int(np.sum(~ok_champ & ok_chall))
    p = binomial_tail_half(b + c, c)
    return McNemarResult(b=b, c=c, p_value=p, significant=bool(p < 1.0 - confidence and c > b), confidence=confidence)


# ------------------------------------------------------------------------------------------ decision


@dataclass(frozen=True)
class Criterion:
    name: str
    passed: bool
    value: float | None
    threshold: float | None
    detail: str


@dataclass
class Decision:
    """Everything needed to audit a promotion later: numbers, criteria, per-intent table, the policy used.

    ``champion_macro_f1``/``challenger_macro_f1``/``gain`` are measured on the compared rows (those whose
    true intent the champion knows); the ``min_macro_f1`` criterion holds the challenger's all-rows value.
    """

    decision: str  # "promoted" | "refused"
    reason: str
    champion_version: str | None
    challenger_version: str
    champion_macro_f1: float | None
    challenger_macro_f1: float
    gain: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    test: str
    criteria: list[Criterion]
    per_intent: list[dict[str, Any]]
    new_intents: list[str]
    excluded_rows: int  # dev rows the caller dropped before deciding (passed through)
    n_examples: int  # dev rows decided on
    compared_rows: int  # rows of (a)-(c): true intent known to the champion
    config: dict[str, Any] = field(default_factory=dict)
    kind: str = "comparison"  # comparison | first-model | new-label-space | small-dev | rollback | manual

    @property
    def promoted(self) -> bool:
        return self.decision == "promoted"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def tags(self) -> dict[str, str]:
        """The MLflow model-version tags: the registry alone then says why a version is (not) champion."""
        return {
            "promotion.decision": self.decision,
            "promotion.reason": self.reason[:500],
            "promotion.champion_version": self.champion_version or "none",
            "promotion.challenger_version": self.challenger_version,
            "promotion.gain": _num(self.gain),
            "promotion.ci_low": _num(self.ci_low),
            "promotion.ci_high": _num(self.ci_high),
            "promotion.p_value": _num(self.p_value),
            "promotion.test": self.test,
            "promotion.excluded_rows": str(self.excluded_rows),
            "promotion.kind": self.kind,
        }

    def markdown(self) -> str:
        """Human-readable decision report (MLflow artifact, Prefect artifact, approval page)."""
        champ = f"v{self.champion_version}" if self.champion_version else "none"
        lines = [
            f"# Promotion: **{self.decision.upper()}** (challenger v{self.challenger_version} vs champion {champ})",
            "",
            self.reason,
            "",
            f"Kind of decision: `{self.kind}`.",
            "",
            "| criterion | value | threshold | passed |",
            "|---|---|---|---|",
        ]
        for c in self.criteria:
            lines.append(f"| {c.name} | {_num(c.value)} | {_num(c.threshold)} | {'yes' if c.passed else 'NO'} |")
        lines += ["", "| | detail |", "|---|---|"]
        lines += [f"| {c.name} | {c.detail} |" for c in self.criteria]
        lines.append("")
        if self.gain is not None:
            conf = self.config.get("confidence", 0.95)
            lines.append(
                f"- macro-F1: champion {_num(self.champion_macro_f1)}, challenger {_num(self.challenger_macro_f1)}, "
                f"gain {_signed(self.gain)}"
            )
            lines.append(
                f"- paired bootstrap: one-sided {conf:.0%} lower bound {_signed(self.ci_low)}, "
                f"upper {_signed(self.ci_high)}; decided by `{self.test}` with p = {_num(self.p_value)}"
            )
        lines.append(
            f"- dev rows: {self.n_examples} decided on, {self.compared_rows} compared, "
            f"{self.excluded_rows} excluded before deciding"
        )
        lines.append(f"- new intents (challenger only): {', '.join(self.new_intents) or 'none'}")
        lines += [
            "",
            "| intent | support | champion F1 | challenger F1 | delta F1 | champion recall | challenger recall |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in self.per_intent:
            lines.append(
                f"| {row['intent']} | {row['support']} | {_num(row['champion_f1'])} | {_num(row['challenger_f1'])} "
                f"| {_signed(row['delta_f1'])} | {_num(row['champion_recall'])} | {_num(row['challenger_recall'])} |"
            )
        return "\n".join(lines) + "\n"


def headline(decision: str, reason: str) -> str:
    """``"promoted: ..."`` once: a policy's reason already starts with its verdict, a review's may not."""
    return reason if reason.startswith(f"{decision}:") else f"{decision}: {reason}"


def _num(x: float | None) -> str:
    return "none" if x is None else f"{x:.4f}"


def _signed(x: float | None) -> str:
    return "none" if x is None else f"{x:+.4f}"


def _policy_dict(cfg: PromotionPolicy) -> dict[str, Any]:
    return {name: getattr(cfg, name) for name in POLICY_FIELDS if hasattr(cfg, name)}


def _per_intent(
    y_true: np.ndarray,
    chall: np.ndarray,
    champ: np.ndarray | None,
    known: np.ndarray,
    vocab: list[str],
) -> list[dict[str, Any]]:
    """Both models per intent, reusing ``report``; known intents are measured on the compared rows."""
    full = report(y_true, chall, vocab).per_label
    support = {name: int(np.sum(y_true == i)) for i, name in enumerate(vocab)}
    rows: list[dict[str, Any]] = []
    if champ is None:
        for name, m in full.items():
            rows.append(_row(name, support[name], None, m))
        return sorted(rows, key=lambda r: r["intent"])
    rows_known = known[y_true]
    compared = np.bincount(y_true[rows_known], minlength=len(vocab))
    champ_rep = report(y_true[rows_known], champ[rows_known], vocab).per_label
    chall_rep = report(y_true[rows_known], chall[rows_known], vocab).per_label
    for i, name in enumerate(vocab):
        if compared[i] > 0:  # the comparison's labels: an intent only predicted (e.g. removed) is no row
            rows.append(_row(name, support[name], champ_rep.get(name, _ZERO), chall_rep.get(name, _ZERO)))
        elif not known[i] and name in full:
            rows.append(_row(name, support[name], None, full[name]))
    return sorted(rows, key=lambda r: (r["delta_f1"] is None, r["delta_f1"] or 0.0, r["intent"]))


_ZERO = {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}


def _row(name: str, support: int, champ: dict[str, float] | None, chall: dict[str, float]) -> dict[str, Any]:
    return {
        "intent": name,
        "support": support,
        "champion_f1": None if champ is None else champ["f1"],
        "challenger_f1": chall["f1"],
        "champion_recall": None if champ is None else champ["recall"],
        "challenger_recall": chall["recall"],
        "delta_f1": None if champ is None else chall["f1"] - champ["f1"],
    }


def _regression(per_intent: list[dict[str, Any]], compared_support: dict[str, int], cfg: PromotionPolicy) -> Criterion:
    checked = [
        r
        for r in per_intent
        if r["champion_f1"] is not None and compared_support.get(r["intent"], 0) >= cfg.min_support
    ]
    if not checked:
        return Criterion(
            "no_intent_regression",
            True,
            None,
            cfg.max_intent_drop,
            f"no intent has >= {cfg.min_support} dev examples to check",
        )
    drops = []
    for r in checked:
        f1_drop = r["champion_f1"] - r["challenger_f1"]
        recall_drop = r["champion_recall"] - r["challenger_recall"]
        drops.append((max(f1_drop, recall_drop), f1_drop, recall_drop, r))
    drops.sort(key=lambda d: -d[0])
    worst = drops[0][0]
    offenders = [d for d in drops if d[0] > cfg.max_intent_drop + _EPS]

    def show(d: tuple[float, float, float, dict[str, Any]]) -> str:
        _, f1_drop, recall_drop, r = d
        return (
            f"{r['intent']} (n={r['support']}: F1 {r['champion_f1']:.3f}->{r['challenger_f1']:.3f}, "
            f"recall {r['champion_recall']:.3f}->{r['challenger_recall']:.3f})"
        )

    if offenders:
        names = "; ".join(show(d) for d in offenders[:5])
        more = f" and {len(offenders) - 5} more" if len(offenders) > 5 else ""
        detail = f"{len(offenders)} intent(s) drop more than {cfg.max_intent_drop:.3f}: {names}{more}"
    else:
        detail = f"{len(checked)} intent(s) checked; largest drop {worst:+.3f} ({show(drops[0])})"
    return Criterion("no_intent_regression", not offenders, float(worst), float(cfg.max_intent_drop), detail)


@dataclass
class _Encoded:
    """Dev labels and predictions as indices into one sorted label vocabulary."""

    vocab: list[str]
    yt: np.ndarray
    chall: np.ndarray
    champ: np.ndarray | None

    @property
    def k(self) -> int:
        return len(self.vocab)


def _encode(
    y_true: Sequence[str], champion: Sequence[str] | None, challenger: Sequence[str], known: Sequence[str] | None
) -> _Encoded:
    n = len(y_true)
    if n == 0:
        raise ValueError("cannot decide on an empty dev set")
    if len(challenger) != n or (champion is not None and len(champion) != n):
        raise ValueError("predictions must have one entry per dev example")
    vocab = sorted(set(y_true) | set(challenger) | set(champion or ()) | set(known or ()))
    index = {name: i for i, name in enumerate(vocab)}

    def enc(xs: Sequence[str]) -> np.ndarray:
        return np.fromiter((index[x] for x in xs), dtype=np.int64, count=n)

    return _Encoded(vocab, enc(y_true), enc(challenger), None if champion is None else enc(champion))


def _floor(e: _Encoded, cfg: PromotionPolicy) -> Criterion:
    value = macro_f1(e.yt, e.chall, e.k)
    return Criterion(
        "min_macro_f1",
        value >= cfg.min_macro_f1 - _EPS,
        value,
        float(cfg.min_macro_f1),
        f"challenger dev macro-F1 on all {len(e.yt)} rows {value:.4f} vs floor {cfg.min_macro_f1:.4f}",
    )


def _significance(interval: Interval, e: _Encoded, rows: np.ndarray, cfg: PromotionPolicy, scope: str) -> Criterion:
    """(b): the bootstrap interval's lower bound above 0, or McNemar's exact test, per the policy."""
    if cfg.significance_test == "bootstrap":
        return Criterion(
            "significance",
            interval.low > 0.0,
            interval.low,
            0.0,
            f"paired bootstrap ({interval.resamples} resamples, seed {cfg.seed}) {scope}: one-sided "
            f"{cfg.confidence:.0%} lower bound of the gain {interval.low:+.4f} must be > 0 "
            f"(p = {interval.p_value:.4f})",
        )
    assert e.champ is not None
    test = mcnemar(e.yt[rows], e.champ[rows], e.chall[rows], confidence=cfg.confidence)
    return Criterion(
        "significance",
        test.significant,
        test.p_value,
        1.0 - cfg.confidence,
        f"exact McNemar {scope}: champion-only right b={test.b}, challenger-only right c={test.c}, "
        f"one-sided p = {test.p_value:.4g} must be < {1.0 - cfg.confidence:.4g} with c > b",
    )


def _comparison(
    e: _Encoded, known: np.ndarray, new_intents: list[str], per_intent: list[dict[str, Any]], cfg: PromotionPolicy
) -> tuple[list[Criterion], dict[str, Any], str | None]:
    """Criteria (a)-(c) on the rows whose intent the champion knows, the numbers they rest on, and why
    (b) is not testable on them (None: it is)."""
    assert e.champ is not None
    rows = known[e.yt]
    m, n = int(rows.sum()), len(e.yt)
    if m == 0:
        none = f"no dev rows of intents the champion knows (new: {', '.join(new_intents)})"
        criteria = [
            Criterion("min_delta", False, None, float(cfg.min_delta), none),
            Criterion("significance", False, None, None, none),
            Criterion("no_intent_regression", True, None, float(cfg.max_intent_drop), none),
        ]
        nums: dict[str, Any] = {"champion_macro_f1": None, "gain": None, "ci_low": None, "ci_high": None}
        nums["p_value"] = None
        return criteria, nums | {"challenger_macro_f1": macro_f1(e.yt, e.chall, e.k), "compared_rows": 0}, None
    scope = f"on the {m} of {n} rows whose intent the champion knows" if new_intents else f"on {n} rows"
    yt, champ, chall = e.yt[rows], e.champ[rows], e.chall[rows]
    champion_f1 = macro_f1(yt, champ, e.k, average_over=known)
    challenger_f1 = macro_f1(yt, chall, e.k, average_over=known)
    interval = paired_bootstrap(yt, champ, chall, e.k, resamples=cfg.bootstrap_resamples, confidence=cfg.confidence,
                                seed=cfg.seed, average_over=known)  # fmt: skip
    delta = Criterion(
        "min_delta",
        interval.gain >= cfg.min_delta - _EPS,
        interval.gain,
        float(cfg.min_delta),
        f"macro-F1 {champion_f1:.4f} -> {challenger_f1:.4f} ({interval.gain:+.4f}) {scope}",
    )
    untestable = _untestable(yt, champ, e.k, known, cfg)
    if untestable is None:
        significance = _significance(interval, e, rows, cfg, scope)
    else:
        significance = _not_testable(interval.gain, mcnemar(yt, champ, chall), untestable, cfg)
    support = {name: int(np.sum(yt == i)) for i, name in enumerate(e.vocab)}
    criteria = [delta, significance, _regression(per_intent, support, cfg)]
    p_value = interval.p_value if cfg.significance_test == "bootstrap" else mcnemar(yt, champ, chall).p_value
    nums = {"champion_macro_f1": champion_f1, "challenger_macro_f1": challenger_f1, "gain": interval.gain,
            "ci_low": interval.low, "ci_high": interval.high, "p_value": p_value, "compared_rows": m}  # fmt: skip
    return criteria, nums, untestable


def _untestable(yt: np.ndarray, champ: np.ndarray, k: int, labels: np.ndarray, cfg: PromotionPolicy) -> str | None:
    """Why (b) cannot pass on these rows even for a challenger right on every one, or None when it can.

    A perfect challenger is the best case of either test: every resample's gain is then the largest
    possible, and McNemar gets b = 0 and c = the champion's errors. Decided with the configured test
    itself (same resamples, seed, confidence); the size it would need is computed at the champion's
    error rate e = wrong / n: McNemar needs c errors with 2^-c < 1 - confidence, so ceil(c / e) rows;
    the bootstrap's bound is above 0 only when a resample misses every error with probability
    (1 - e)^rows below 1 - confidence. A champion right on every row is no small-dev case: nothing
    can beat it, and the comparison refuses.
    """
    n, wrong = len(yt), int(np.sum(champ != yt))
    if wrong == 0:
        return None
    alpha = 1.0 - cfg.confidence
    if cfg.significance_test == "mcnemar":
        if binomial_tail_half(wrong, wrong) < alpha:
            return None
        need = 1
        while binomial_tail_half(need, need) >= alpha:
            need += 1
        rows = -(-need * n // wrong)
    else:
        perfect = paired_bootstrap(yt, champ, yt, k, resamples=cfg.bootstrap_resamples, confidence=cfg.confidence,
                                   seed=cfg.seed, average_over=labels)  # fmt: skip
        if perfect.low > 0.0:
            return None
        miss = 1.0 - wrong / n
        rows = max(1, math.ceil(math.log(alpha) / math.log(miss)))
        while miss**rows >= alpha:
            rows += 1
        while rows > 1 and miss ** (rows - 1) < alpha:
            rows -= 1
    rows = max(rows, n + 1)  # the seeded test already failed on these n rows
    return (
        f"{n} dev rows; a significant gain needs at least {rows} (at the champion's error rate, {wrong} of {n} "
        f"wrong, even a perfect challenger cannot pass {cfg.significance_test} at {cfg.confidence:.0%})"
    )


def _not_testable(gain: float, rows: McNemarResult, why: str, cfg: PromotionPolicy) -> Criterion:
    """(b) on a dev split too small for the test: ``small_dev`` refuses, or a dominance stands in.

    Without a test, a gain is trusted only when it costs nothing: the challenger is right on every
    compared row the champion gets right (b = 0) and its macro-F1 is higher. A small-dev case also
    arises on a large dev split against a nearly perfect champion (2 errors in 500 rows cannot be
    tested either); there, swapping one right row for two would otherwise replace the champion on noise.
    """
    if cfg.small_dev == "refuse":
        return Criterion("significance", False, None, None, f"not testable: {why}; promotion.small_dev=refuse")
    return Criterion(
        "significance",
        gain > _EPS and rows.b == 0,
        gain,
        0.0,
        f"not testable: {why}; promotion.small_dev={cfg.small_dev}: min_delta, the per-intent check and the floor "
        f"decide, with the challenger right on every row the champion gets right (champion-only right: {rows.b}) "
        "and a gain above 0 (a tie never replaces the champion)",
    )


NEW_LABEL_SPACE_SHARE = 0.5
"""(a)-(c) need the two models to share at least this fraction of the intents either one knows."""


def decide(
    y_true_labels: Sequence[str],
    champion_pred: Sequence[str] | None,
    challenger_pred: Sequence[str],
    cfg: PromotionPolicy,
    *,
    champion_version: str | None,
    challenger_version: str,
    excluded_rows: int = 0,
    champion_labels: Sequence[str] | None = None,
    challenger_labels: Sequence[str] | None = None,
) -> Decision:
    """Apply the policy to dev-set predictions (intent names) of both models.

    ``champion_pred=None``: no champion yet, only the absolute floor decides. ``champion_labels`` is the
    champion model's label set: intents outside it are new (reported, not held against the challenger),
    so (a)-(c) compare the two models on rows whose true intent the champion could have predicted.
    ``challenger_labels`` (default: the dev truth and the challenger's predictions) with it tells a new
    label space: under ``NEW_LABEL_SPACE_SHARE`` of the intents shared, the floor alone decides.
    """
    if cfg.significance_test not in ("bootstrap", "mcnemar"):
        raise ValueError(f"significance_test must be bootstrap or mcnemar, got {cfg.significance_test!r}")
    e = _encode(y_true_labels, champion_pred, challenger_pred, champion_labels)
    floor = _floor(e, cfg)
    common: dict[str, Any] = {
        "champion_version": champion_version,
        "challenger_version": challenger_version,
        "excluded_rows": int(excluded_rows),
        "n_examples": len(e.yt),
        "config": _policy_dict(cfg),
    }
    if e.champ is None:
        return _by_floor(e, floor, cfg, common, "first-model", "no champion yet and the challenger's", [])
    champion_known = set(champion_labels) if champion_labels is not None else set(e.vocab)
    challenger_known = set(challenger_labels or ()) or set(y_true_labels) | set(challenger_pred)
    known = np.array([name in champion_known for name in e.vocab], dtype=bool)
    new_intents = [x for i, x in enumerate(e.vocab) if not known[i] and (np.any(e.yt == i) or np.any(e.chall == i))]
    shared, union = champion_known & challenger_known, champion_known | challenger_known
    if len(shared) < NEW_LABEL_SPACE_SHARE * len(union):
        why = (
            f"new label space: champion v{champion_version} and this version share {len(shared)} of {len(union)} "
            f"intents (under {NEW_LABEL_SPACE_SHARE:.0%}), so a comparison says nothing; the challenger's"
        )
        return _by_floor(e, floor, cfg, common, "new-label-space", why, new_intents)
    per_intent = _per_intent(e.yt, e.chall, e.champ, known, e.vocab)
    criteria, nums, untestable = _comparison(e, known, new_intents, per_intent, cfg)
    criteria.append(floor)
    failed = [c for c in criteria if not c.passed]
    if failed:
        reason = "refused: failed " + ", ".join(f"{c.name} ({_short(c, cfg.significance_test)})" for c in failed) + "."
    elif untestable is None:
        reason = (
            f"promoted: challenger v{challenger_version} beats champion v{champion_version} by {nums['gain']:+.4f} "
            f"macro-F1 ({cfg.significance_test} significant, no intent regression, floor met)."
        )
    else:
        reason = (
            f"promoted: challenger v{challenger_version} beats champion v{champion_version} by {nums['gain']:+.4f} "
            f"macro-F1, not testable: {untestable}; promotion.small_dev={cfg.small_dev}: min_delta, no intent "
            "regression and the floor decided."
        )
    return Decision(decision="refused" if failed else "promoted", reason=reason, test=cfg.significance_test,
                    criteria=criteria, per_intent=per_intent, new_intents=new_intents, **nums, **common,
                    kind="comparison" if untestable is None else "small-dev")  # fmt: skip


def _by_floor(
    e: _Encoded, floor: Criterion, cfg: PromotionPolicy, common: dict[str, Any], kind: str, why: str, new: list[str]
) -> Decision:
    """No comparison (no champion, or a new label space): the absolute floor alone decides."""
    assert floor.value is not None
    verdict = "reaches" if floor.passed else "is below"
    reason = (
        f"{'promoted' if floor.passed else 'refused'}: {why} dev macro-F1 {floor.value:.4f} {verdict} the floor "
        f"{cfg.min_macro_f1:.4f}" + ("." if floor.passed else " (min_macro_f1).")
    )
    return Decision(
        decision="promoted" if floor.passed else "refused", reason=reason, champion_macro_f1=None,
        challenger_macro_f1=floor.value, gain=None, ci_low=None, ci_high=None, p_value=None, test="none",
        criteria=[floor], per_intent=_per_intent(e.yt, e.chall, None, np.ones(e.k, dtype=bool), e.vocab),
        new_intents=new, compared_rows=0, kind=kind, **common,
    )  # fmt: skip


def needs_approval(decision: Decision, cfg: PromotionPolicy) -> bool:
    """A promotion a person must approve first: ``require_approval``, or a small-dev one under
    ``small_dev: approval`` (the test could not speak, so a person does)."""
    if not decision.promoted:
        return False
    return bool(cfg.require_approval) or (decision.kind == "small-dev" and cfg.small_dev == "approval")


def _short(c: Criterion, test: str) -> str:
    """One clause per failed criterion for the reason sentence."""
    if c.value is None:
        return c.detail
    if c.name == "min_delta":
        return f"gain {c.value:+.4f} < {c.threshold:.4f}"
    if c.name == "significance":
        if c.detail.startswith("not testable"):
            return f"gain {c.value:+.4f} without dominance (above 0, no row the champion gets right lost); {c.detail}"
        if test == "bootstrap":
            return f"bootstrap lower bound {c.value:+.4f} <= 0"
        return f"McNemar p {c.value:.4g} not < {c.threshold:.4g} with more challenger-only wins"
    if c.name == "no_intent_regression":
        return c.detail
    return f"macro-F1 {c.value:.4f} < {c.threshold:.4f}"


def decision_from_dict(raw: dict[str, Any]) -> Decision:
    """Rebuild a recorded decision (its JSON artifact) so a rerun applies it instead of deciding again."""
    fields = {f for f in Decision.__dataclass_fields__}
    data = {k: v for k, v in raw.items() if k in fields}
    data["criteria"] = [Criterion(**c) for c in data.get("criteria", [])]
    return Decision(**data)


def reviewed(decision: Decision, approved: bool | None, reviewer: str, comment: str) -> Decision:
    """The policy's decision after a person's answer: a refusal turns it into "refused"; no answer
    (``approved=None``: the approval timed out or the pause failed) into "undecided", which the next
    run decides again instead of treating it as a refusal."""
    from dataclasses import replace

    if approved is None:
        note = comment or "no answer"
        criterion = Criterion("human_approval", False, None, None, f"not decided: {note}")
        return replace(
            decision,
            decision="undecided",
            reason=f"undecided: {note}; the next run decides again (the policy said: {decision.reason})",
            criteria=[*decision.criteria, criterion],
        )
    verdict = "approved" if approved else "refused"
    note = f"{verdict} by {reviewer or 'a reviewer'}" + (f": {comment}" if comment else "")
    criterion = Criterion("human_approval", approved, None, None, note)
    return replace(
        decision,
        decision="promoted" if approved and decision.promoted else "refused",
        reason=f"{decision.reason} Human review: {note}.",
        criteria=[*decision.criteria, criterion],
    )
