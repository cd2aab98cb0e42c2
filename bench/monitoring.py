"""Drift monitoring on BANKING77: how often each signal notices a new intent, and how often it cries wolf.

Three sub-commands, each run once:

    python bench/monitoring.py predict --model-dir DIR --cache CACHE   # predictions + embeddings of every row, once
    python bench/monitoring.py detect --cache CACHE [--windows 40]     # thresholds on dev, the table on test
    python bench/monitoring.py walltime --cache CACHE [--rows 100000] [--model-dir DIR]   # one big window

Protocol (the held-out intents of ``bench/inference.py``: 50 known intents trained on, 8 dev-unseen,
19 test-unseen). The model is ``bench/inference.py train --held-out`` calibrated with ``ood
--save-calibration``. Reference = its predictions on its dev carve of the known intents (what the
champion's reference is: its dev split with its own predictions). A window of N requests is drawn
with replacement from known-intent rows, with the unseen intents' rows at 0, 5, 10 or 20 % of
traffic; the null case is a pure resample of the reference. Dev phase (thresholds are chosen here
only): reference = one half of the dev carve (stratified), known rows = the other half, unseen = the
dev-unseen intents' train rows; thresholds keep both the null and the 0 % windows quiet. Test phase (the
table, once): known rows = the official test rows of the known intents, unseen = the test-unseen
intents' test rows. Every row is predicted (and embedded) once; windows resample the cache.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

CONDITIONS = ("null", "0%", "5%", "10%", "20%")
SHARES = {"null": 0.0, "0%": 0.0, "5%": 0.05, "10%": 0.10, "20%": 0.20}
SIGNALS = (
    "intent_drift",
    "score_drift",
    "ood_score_drift",
    "text_length_drift",
    "text_drift",
    "embedding_drift",
    "embedding_drift_model",
    "oos_rate",
)
P_VALUES = ("intent_drift", "score_drift", "ood_score_drift", "text_length_drift")
ALARMS = ("intent_drift", "score_drift", "ood_score_drift", "text_length_drift", "text_drift", "embedding_drift",
          "oos_rate")  # fmt: skip
"""The signals of the default configuration ("any" is their union)."""
P_GRID = (0.05, 0.01, 0.001, 0.0001)


def _datasets(path: Path | None) -> None:
    import inference

    if path is not None:
        inference.SHARED = path


def cmd_predict(args: argparse.Namespace) -> int:
    """Predict and embed every row the windows draw from, once (cache: a Parquet frame + a .npy)."""
    import inference
    import pandas as pd
    import torch

    from intent_mlops.inference.predictor import Predictor
    from intent_mlops.inference.validation import Limits

    _datasets(args.datasets)
    torch.set_num_threads(args.threads)
    f = inference.held_out_frames()
    test = f["test"]
    groups = {
        "reference": f["dev"],
        "dev_new": f["dev_oos"],
        "test_known": test[test["label"] != "oos"],
        "test_new": test[test["label"] == "oos"],
    }
    rows = pd.concat([g[["text", "label"]].assign(group=name) for name, g in groups.items()], ignore_index=True)
    p = Predictor.load(args.model_dir, num_threads=args.threads, limits=Limits(max_chars=10_000, max_batch=100_000))
    if p.calibration is None:
        print(f"{args.model_dir}: no ood.json; run bench/inference.py ood --save-calibration first", file=sys.stderr)
        return 2
    t = time.perf_counter()
    texts = rows["text"].tolist()
    cols = p.predict_columns(texts, top_k=2)
    emb = p.forward(texts, pooling="mean").embeddings
    assert emb is not None
    rows["intent"] = cols["label"].astype(str)
    rows["score"] = cols["score"]
    rows["margin"] = cols["top_probs"][:, 0] - cols["top_probs"][:, 1]
    rows["out_of_scope"] = cols["out_of_scope"].astype(bool)
    rows["ood_score"] = cols["ood_score"]
    args.cache.mkdir(parents=True, exist_ok=True)
    rows.to_parquet(args.cache / "rows.parquet")
    np.save(args.cache / "embeddings.npy", emb.astype(np.float32))
    print(f"predicted + embedded {len(rows)} rows in {time.perf_counter() - t:.0f} s "
          f"({', '.join(f'{k} {len(v)}' for k, v in groups.items())}) -> {args.cache}")  # fmt: skip
    for name in groups:
        g = rows[rows["group"] == name]
        print(f"  {name}: out-of-scope rate {g['out_of_scope'].mean():.3f}, median score {g['score'].median():.3f}")
    return 0


def _load(cache: Path) -> tuple[Any, np.ndarray]:
    import pandas as pd

    return pd.read_parquet(cache / "rows.parquet"), np.load(cache / "embeddings.npy")


def _window(rows: Any, known: np.ndarray, new: np.ndarray, ref: np.ndarray, cond: str, n: int, rng: Any) -> np.ndarray:
    if cond == "null":
        return rng.choice(ref, n, replace=True)
    k = int(round(SHARES[cond] * n))
    return rng.permutation(np.concatenate([rng.choice(new, k, replace=True), rng.choice(known, n - k, replace=True)]))


def _values(rows: Any, emb: np.ndarray, ref: np.ndarray, cur: np.ndarray, cfg: Any, seed: int) -> dict[str, float]:
    from intent_mlops.monitoring.drift import _embedding_method, compute_signals

    current = rows.iloc[cur].reset_index(drop=True)
    signals, extras = compute_signals(
        rows.iloc[ref].reset_index(drop=True), current, cfg, reference_embeddings=emb[ref],
        current_embeddings=emb[cur], seed=seed,
    )  # fmt: skip
    out = {s.name: s.value for s in signals if s.name in SIGNALS}
    e = extras["embeddings"]
    out["embedding_drift_model"] = float(
        _embedding_method(dataclasses.replace(cfg, embedding_drift_method="model"))(
            e["current"].copy(), e["reference"].copy()
        )[0]
    )
    return out


def _halves(rows: Any, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The dev carve split in two, stratified by label (fixed seed)."""
    rng = np.random.default_rng(1)
    a: list[int] = []
    labels = rows["label"].to_numpy()[positions]
    for label in sorted(set(labels)):
        mine = rng.permutation(positions[labels == label])
        a.extend(mine[: (len(mine) + 1) // 2])
    first = np.sort(np.asarray(a))
    return first, np.setdiff1d(positions, first)


def _crossed(name: str, values: np.ndarray, threshold: float) -> np.ndarray:
    return values < threshold if name in P_VALUES else values > threshold


def cmd_detect(args: argparse.Namespace) -> int:
    import warnings

    from intent_mlops.config.params import MonitoringConfig

    warnings.filterwarnings("ignore")
    rows, emb = _load(args.cache)
    idx = {g: np.flatnonzero(rows["group"].to_numpy() == g) for g in rows["group"].unique()}
    # dev: half of the dev carve (stratified) is the reference, the other half the in-scope traffic, so
    # that "0%" is fresh in-scope text (a resample of the reference itself is an easy null for the text
    # and embedding classifiers: they see the very same rows); test: the whole dev carve is the reference
    ref_a, ref_b = _halves(rows, idx["reference"])
    phases = {"dev": (ref_a, ref_b, idx["dev_new"]), "test": (idx["reference"], idx["test_known"], idx["test_new"])}
    cfg = MonitoringConfig(text_sample=args.text_sample, embedding_sample=args.embedding_sample)
    sizes = [int(s) for s in args.sizes.split(",")]
    values: dict[tuple[str, int, str], dict[str, list[float]]] = {}
    t0 = time.perf_counter()
    for phase, (ref, known, new) in phases.items():
        for n in sizes:
            for ci, cond in enumerate(CONDITIONS):
                cell: dict[str, list[float]] = {s: [] for s in SIGNALS}
                for w in range(args.windows):
                    seed = n * 7919 + ci * 104729 + w + (phase == "test") * 10**7
                    rng = np.random.default_rng(seed)
                    cur = _window(rows, known, new, ref, cond, n, rng)
                    for k, v in _values(rows, emb, ref, cur, cfg, seed).items():
                        cell[k].append(v)
                values[(phase, n, cond)] = cell
                print(f"{phase} n={n} {cond}: {args.windows} windows ({time.perf_counter() - t0:.0f} s)", flush=True)

    # thresholds from the dev phase only
    chosen: dict[str, float] = {}
    how: dict[str, str] = {}
    for s in SIGNALS:
        nulls = [np.asarray(values[("dev", n, c)][s]) for n in sizes for c in ("null", "0%")]
        if s in P_VALUES:
            ok = [p for p in P_GRID if all(_crossed(s, v, p).mean() <= 1.0 / args.windows for v in nulls)]
            chosen[s] = min(max(ok), args.max_p) if ok else P_GRID[-1]
            how[s] = (
                f"largest of {P_GRID} (capped at {args.max_p}) with <= 1 alarm in {args.windows} dev windows "
                "at every size, null and 0%"
            )
        else:
            chosen[s] = float(max(v.mean() + 3 * v.std() for v in nulls))
            how[s] = "max over window sizes and the null / 0% cases of (dev mean + 3 sd)"
    chosen["oos_rate"] = round(chosen["oos_rate"], 2)
    for s in ("text_drift", "embedding_drift", "embedding_drift_model"):
        chosen[s] = round(chosen[s], 3)

    def table(phase: str) -> list[str]:
        head = "| signal | threshold |" + "".join(f" {c} @{n} |" for n in sizes for c in CONDITIONS)
        lines = [head, "|---|---|" + "---|" * (len(sizes) * len(CONDITIONS))]
        for s in (*SIGNALS, "any"):
            cells = []
            for n in sizes:
                for cond in CONDITIONS:
                    cell = values[(phase, n, cond)]
                    if s == "any":
                        hit = np.any([_crossed(a, np.asarray(cell[a]), chosen[a]) for a in ALARMS], axis=0)
                    else:
                        hit = _crossed(s, np.asarray(cell[s]), chosen[s])
                    cells.append(f"{100 * hit.mean():.0f}")
            thr = "(union of the defaults)" if s == "any" else f"{'p < ' if s in P_VALUES else '> '}{chosen[s]:g}"
            lines.append(f"| {s} | {thr} | " + " | ".join(cells) + " |")
        return lines

    command = "python bench/monitoring.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    print(f"\n`{command}` ({time.perf_counter() - t0:.0f} s, load average {os.getloadavg()[0]:.1f})")
    print("\nthresholds chosen on dev:")
    for s in SIGNALS:
        print(f"  {s}: {chosen[s]:g}  ({how[s]})")
    for phase in ("dev", "test"):
        print(f"\n{phase}: % of windows crossing (null: resample of the reference; k%: unseen intents' share)")
        print("\n".join(table(phase)))
    medians = {f"{p}/{n}/{c}": {s: float(np.median(v)) for s, v in cell.items()} for (p, n, c), cell in values.items()}
    if args.json:
        raw = {f"{p}/{n}/{c}": v for (p, n, c), v in values.items()}
        args.json.write_text(json.dumps({"thresholds": chosen, "how": how, "medians": medians, "values": raw}))
    print("\nmedian values (test):")
    for n in sizes:
        for c in CONDITIONS:
            m = medians[f"test/{n}/{c}"]
            print(f"  n={n} {c}: " + ", ".join(f"{s} {m[s]:.3g}" for s in SIGNALS))
    return 0


def cmd_walltime(args: argparse.Namespace) -> int:
    """drift_report (with Evidently's HTML) on one window of ``--rows`` answers, as the monitor flow runs it."""
    import warnings
    from datetime import UTC, datetime

    from intent_mlops.config.params import load_config
    from intent_mlops.monitoring.drift import drift_report

    warnings.filterwarnings("ignore")
    cfg = load_config(REPO / "params.yaml").monitoring
    rows, emb = _load(args.cache)
    idx = {g: np.flatnonzero(rows["group"].to_numpy() == g) for g in rows["group"].unique()}
    rng = np.random.default_rng(0)
    cur = _window(rows, idx["test_known"], idx["test_new"], idx["reference"], "10%", args.rows, rng)
    current = rows.iloc[cur].reset_index(drop=True)
    current["time"] = datetime.now(UTC)
    current["model_version"] = "intent-classifier/1"
    current["request_id"] = [f"r{i}" for i in range(len(current))]
    current["latency_ms"] = rng.gamma(4, 2.0, len(current))
    reference = rows.iloc[idx["reference"]].reset_index(drop=True)
    sample = rng.choice(len(cur), min(cfg.embedding_sample, len(cur)), replace=False)
    if args.model_dir:
        import torch

        from intent_mlops.inference.predictor import Predictor

        torch.set_num_threads(args.threads)
        p = Predictor.load(args.model_dir, num_threads=args.threads)
        t = time.perf_counter()
        p.forward(current["text"].iloc[sample].tolist(), pooling="mean")
        print(
            f"embedding {len(sample)} window texts (torch fp32, {args.threads} threads): "
            f"{time.perf_counter() - t:.1f} s"
        )
    t = time.perf_counter()
    report = drift_report(reference, current, cfg, reference_embeddings=emb[idx["reference"]],
                          current_embeddings=emb[cur][sample])  # fmt: skip
    total = time.perf_counter() - t
    print(f"drift_report on {len(current)} rows (reference {len(reference)}): {total:.1f} s wall, "
          f"HTML {len(report.html) / 1e6:.1f} MB, load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    for s in report.signals:
        print(f"  {'CROSSED ' if s.crossed else ''}{s.name}: {s.detail}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--datasets", type=Path, default=None, help="folder holding banking77/ (default: ../shared/datasets)"
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("predict", help="predict + embed every row once")
    p.add_argument(
        "--model-dir", type=Path, required=True, help="a calibrated model from `inference.py train --held-out`"
    )
    p.add_argument("--cache", type=Path, required=True, help="a folder outside the repository")
    p.add_argument("--threads", type=int, default=2)
    d = sub.add_parser("detect", help="detection and false-alarm rates per signal")
    d.add_argument("--cache", type=Path, required=True)
    d.add_argument("--windows", type=int, default=40)
    d.add_argument("--sizes", default="500,2000")
    d.add_argument("--text-sample", type=int, default=2000)
    d.add_argument("--embedding-sample", type=int, default=1000)
    d.add_argument("--max-p", type=float, default=0.01, help="cap of the p-value thresholds (several tests are or-ed)")
    d.add_argument("--json", type=Path, default=None)
    w = sub.add_parser("walltime", help="drift_report wall time on one big window")
    w.add_argument("--cache", type=Path, required=True)
    w.add_argument("--rows", type=int, default=100_000)
    w.add_argument("--model-dir", type=Path, default=None, help="also time embedding the window's sample")
    w.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    _datasets(args.datasets)
    return {"predict": cmd_predict, "detect": cmd_detect, "walltime": cmd_walltime}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
