"""Out-of-scope scores, thresholds, calibration and its storage, on synthetic arrays (numpy only)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from intent_mlops.inference import ood


def _blobs(n_per: int, classes: int, dim: int, seed: int, spread: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 6, size=(classes, dim))
    y = np.repeat(np.arange(classes), n_per)
    return centres[y] + rng.normal(0, spread, size=(len(y), dim)), y


def test_scores_are_oriented_higher_in_scope() -> None:
    peaked = np.array([[10.0, 0.0, 0.0]])
    flat = np.array([[1.0, 1.0, 1.0]])
    for name in ("max_softmax", "temperature", "energy"):
        assert ood.compute_score(name, peaked, temperature=2.0)[0] > ood.compute_score(name, flat, temperature=2.0)[0]
    assert ood.max_softmax(flat)[0] == pytest.approx(1 / 3)
    assert ood.energy(flat)[0] == pytest.approx(1 + np.log(3))
    with pytest.raises(ValueError, match="unknown"):
        ood.compute_score("knn", peaked)


def test_softmax_is_stable_for_large_logits() -> None:
    p = ood.softmax(np.array([[1000.0, 0.0], [-1000.0, -1000.0]]))
    assert np.isfinite(p).all() and np.allclose(p.sum(1), 1) and p[0, 0] == pytest.approx(1.0)


def test_fit_temperature_recovers_known_temperature() -> None:
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 2, size=(4000, 5))
    y = np.array([rng.choice(5, p=p) for p in ood.softmax(true_logits)])
    t = ood.fit_temperature(true_logits * 3.0, y)  # over-confident by 3x
    assert t == pytest.approx(3.0, rel=0.1)
    assert ood.nll(true_logits * 3.0, y, t) < ood.nll(true_logits * 3.0, y, 1.0)


def test_ledoit_wolf_shrinkage() -> None:
    rng = np.random.default_rng(1)
    mix = rng.normal(size=(6, 6)) * np.array([5.0, 3, 2, 1, 0.5, 0.1])
    many = rng.normal(size=(5000, 6)) @ mix  # far from a scaled identity, plenty of rows: little shrinkage
    few = rng.normal(size=(20, 50))  # fewer rows than dimensions: strong shrinkage
    a_many, a_few = ood.ledoit_wolf_shrinkage(many - many.mean(0)), ood.ledoit_wolf_shrinkage(few - few.mean(0))
    assert 0.0 <= a_many < 0.05 and 0.5 < a_few <= 1.0
    sk = pytest.importorskip("sklearn.covariance")  # reference implementation, test-time only
    for x in (many, few):
        assert ood.ledoit_wolf_shrinkage(x - x.mean(0)) == pytest.approx(
            sk.ledoit_wolf_shrinkage(x, assume_centered=False), rel=1e-6, abs=1e-9
        )


def test_mahalanobis_separates_far_points_and_inverts_with_few_rows() -> None:
    x, y = _blobs(30, 4, 16, seed=2)
    means, precision, classes, alpha = ood.fit_mahalanobis(x, y)
    assert classes == [0, 1, 2, 3] and means.shape == (4, 16) and precision.shape == (16, 16) and 0 < alpha <= 1
    assert np.allclose(precision, precision.T)
    near = ood.mahalanobis(means + 0.1, means, precision)
    far = ood.mahalanobis(means + 50.0, means, precision)
    assert (near > far).all() and (near <= 0).all()
    # squared distance of a class mean to itself is 0
    assert np.allclose(ood.mahalanobis(means, means, precision), 0.0, atol=1e-8)
    # more dimensions than rows: shrinkage keeps it invertible
    xs, ys = _blobs(2, 3, 40, seed=3)
    _, p2, _, a2 = ood.fit_mahalanobis(xs, ys)
    assert np.isfinite(p2).all() and a2 > 0
    with pytest.raises(ValueError, match="shrinkage"):
        ood.fit_mahalanobis(x, y, shrinkage=1.5)


def test_pool_cls_and_masked_mean() -> None:
    h = np.arange(2 * 3 * 2, dtype=np.float32).reshape(2, 3, 2)
    mask = np.array([[1, 1, 0], [1, 1, 1]])
    assert np.array_equal(ood.pool(h, mask, "cls"), h[:, 0])
    assert np.allclose(ood.pool(h, mask, "mean")[0], h[0, :2].mean(0))
    assert np.allclose(ood.pool(h, mask, "mean")[1], h[1].mean(0))


def test_threshold_keeps_in_scope_recall_ratio() -> None:
    s = np.linspace(0, 1, 101)
    thr = ood.choose_threshold(s, 0.98)
    assert (s >= thr).mean() >= 0.98 and (s >= np.nextafter(thr, 2)).mean() < 0.98
    # with correctness: only correct rows count, wrong ones may be rejected for free
    correct = s > 0.5
    thr_c = ood.choose_threshold(s, 0.98, correct_in_scope_dev=correct)
    kept = (correct & (s >= thr_c)).sum() / correct.sum()
    assert kept >= 0.98 and thr_c > 0.5
    assert ood.choose_threshold(s, 1.0) == s.min()


def test_threshold_reaches_target_oos_recall() -> None:
    ins = np.linspace(0.5, 1.0, 50)
    oos = np.linspace(0.0, 0.6, 40)
    thr = ood.choose_threshold(ins, oos_scores_dev=oos, target_oos_recall=0.9)
    assert (oos < thr).mean() >= 0.9
    assert (oos < np.nextafter(np.sort(oos)[35], -1)).mean() < 0.9  # and no lower threshold reaches it
    with pytest.raises(ValueError, match="oos_scores_dev"):
        ood.choose_threshold(ins, target_oos_recall=0.9)
    with pytest.raises(ValueError):
        ood.choose_threshold(ins, 0.0)


def test_auroc_matches_pairwise_definition_with_ties() -> None:
    rng = np.random.default_rng(4)
    pos = rng.integers(0, 5, 40).astype(float)
    neg = rng.integers(0, 5, 30).astype(float)
    brute = np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])
    assert ood.auroc(pos, neg) == pytest.approx(brute)
    assert ood.auroc([2, 3], [0, 1]) == 1.0 and ood.auroc([0], [1]) == 0.0
    assert np.isnan(ood.auroc([], [1.0]))


def test_ood_metrics() -> None:
    true_oos = np.array([0, 0, 0, 0, 1, 1], bool)
    flagged = np.array([0, 0, 1, 0, 1, 0], bool)
    correct = np.array([1, 1, 1, 0, 0, 0], bool)
    scores = np.array([0.9, 0.8, 0.2, 0.7, 0.1, 0.75])
    m = ood.ood_metrics(true_oos, flagged, correct, scores)
    assert m.n_in_scope == 4 and m.n_oos == 2
    assert m.in_scope_accuracy == pytest.approx(2 / 4) and m.in_scope_accuracy_unthresholded == pytest.approx(3 / 4)
    assert m.oos_recall == pytest.approx(0.5) and m.oos_precision == pytest.approx(0.5)
    assert m.in_scope_rejected == pytest.approx(0.25)
    assert m.auroc == pytest.approx(ood.auroc(-scores[true_oos], -scores[~true_oos]))
    thr, rec = ood.oos_recall_at_in_scope_accuracy(scores, correct, true_oos, 0.5)
    assert thr == pytest.approx(0.8) and rec == pytest.approx(1.0)
    # the model's own oos class rejects the last row whatever its score
    assert ood.oos_recall_at_in_scope_accuracy(scores, correct, true_oos, 0.75) == (pytest.approx(0.2), 0.5)
    argmax_oos = np.array([0, 0, 0, 0, 0, 1], bool)
    assert ood.oos_recall_at_in_scope_accuracy(scores, correct, true_oos, 0.75, argmax_oos)[1] == 1.0


def _synthetic_model(seed: int = 0) -> dict[str, np.ndarray]:
    """4 known classes (train + dev), plus unseen out-of-scope dev rows far from every class."""
    x, y = _blobs(60, 6, 8, seed=seed, spread=1.5)
    known = y < 4
    w = np.random.default_rng(seed).normal(size=(8, 4))
    logits = x @ w
    rng = np.random.default_rng(seed + 1)
    split = rng.random(len(y)) < 0.5
    dev_y = np.where(known, y, -1)
    return {
        "train_emb": x[split & known],
        "train_y": y[split & known],
        "dev_logits": logits[~split],
        "dev_emb": x[~split],
        "dev_y": dev_y[~split],
    }


def test_calibrate_arrays_picks_best_auroc_with_oos_rows() -> None:
    d = _synthetic_model()
    calib, cands = ood.calibrate_arrays(d["train_emb"], d["train_y"], d["dev_logits"], d["dev_emb"], d["dev_y"])
    assert set(cands) == set(ood.SCORES)
    best = max(cands.values(), key=lambda c: c.dev.auroc)
    assert calib.score == best.score and calib.dev["chosen_by"] == "auroc"
    assert calib.target == {"kind": "in_scope_recall_ratio", "value": 0.98}
    for c in cands.values():
        assert c.dev.in_scope_accuracy >= 0.98 * c.dev.in_scope_accuracy_unthresholded - 1e-9
    # on well separated blobs the embedding distance is the best detector
    assert cands["mahalanobis"].dev.auroc > 0.95


def test_calibrate_arrays_without_oos_uses_default_and_oos_target() -> None:
    d = _synthetic_model()
    ins = d["dev_y"] >= 0
    calib, _ = ood.calibrate_arrays(
        d["train_emb"], d["train_y"], d["dev_logits"][ins], d["dev_emb"][ins], d["dev_y"][ins]
    )
    assert calib.score == ood.DEFAULT_SCORE and calib.dev["chosen_by"] == "default"
    assert np.isnan(calib.dev["auroc"])
    calib2, cands = ood.calibrate_arrays(
        d["train_emb"], d["train_y"], d["dev_logits"], d["dev_emb"], d["dev_y"], score="energy", target_oos_recall=0.9
    )
    assert calib2.score == "energy" and calib2.target["kind"] == "oos_recall"
    assert cands["energy"].dev.oos_recall >= 0.9
    with pytest.raises(ValueError, match="not available"):
        ood.calibrate_arrays(None, d["train_y"], d["dev_logits"], None, d["dev_y"], score="mahalanobis")


def test_calibrate_arrays_with_an_oos_class() -> None:
    """The model has its own oos class (id 3): its argmax is out of scope whatever the score."""
    d = _synthetic_model(seed=5)
    dev_y = np.where(d["dev_y"] < 0, 3, d["dev_y"])
    calib, cands = ood.calibrate_arrays(
        d["train_emb"], d["train_y"], d["dev_logits"], d["dev_emb"], dev_y, oos_index=3, oos_label="oos",
        target_oos_recall=0.95,
    )  # fmt: skip
    assert calib.oos_label == "oos" and calib.target == {"kind": "oos_recall", "value": 0.95}
    assert all(c.dev.oos_recall >= 0.95 for c in cands.values())
    if calib.score == "mahalanobis":
        assert calib.mean_classes is not None and 3 not in calib.mean_classes


def test_calibration_round_trips_through_json_and_safetensors(tmp_path: Path) -> None:
    d = _synthetic_model()
    calib, _ = ood.calibrate_arrays(
        d["train_emb"], d["train_y"], d["dev_logits"], d["dev_emb"], d["dev_y"], score="mahalanobis", pooling="mean"
    )
    calib.save(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"ood.json", "ood.safetensors"}
    raw = json.loads((tmp_path / "ood.json").read_text())  # strict JSON (no NaN)
    assert raw["score"] == "mahalanobis" and raw["pooling"] == "mean" and raw["arrays"] == "ood.safetensors"
    back = ood.OodCalibration.load(tmp_path)
    assert back is not None and back.score == calib.score and back.threshold == calib.threshold
    assert back.means is not None and calib.means is not None
    assert np.allclose(back.means, calib.means, atol=1e-5)
    s1 = calib.scores(d["dev_logits"], d["dev_emb"])
    s2 = back.scores(d["dev_logits"], d["dev_emb"])
    assert np.allclose(s1, s2, rtol=1e-4, atol=1e-3)
    assert back.tags()["ood.score"] == "mahalanobis"
    # a logit score saved over it removes the stale arrays
    calib_t, _ = ood.calibrate_arrays(None, d["train_y"], d["dev_logits"], None, d["dev_y"], score="temperature",
                                      scores=("max_softmax", "temperature", "energy"))  # fmt: skip
    calib_t.save(tmp_path)
    assert not (tmp_path / "ood.safetensors").exists()
    assert ood.OodCalibration.load(tmp_path).score == "temperature"  # type: ignore[union-attr]
    assert ood.OodCalibration.load(tmp_path / "nothing") is None


def test_calibration_refuses_bad_fields() -> None:
    with pytest.raises(ValueError, match="unknown out-of-scope score"):
        ood.OodCalibration(score="knn", threshold=0.5, target={})
    with pytest.raises(ValueError, match="means"):
        ood.OodCalibration(score="mahalanobis", threshold=0.5, target={})
    with pytest.raises(ValueError, match="temperature"):
        ood.OodCalibration(score="energy", threshold=0.5, target={}, temperature=0.0)
