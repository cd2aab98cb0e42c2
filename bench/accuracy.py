"""Accuracy of the default params on real intent corpora, next to published references.

For each data set: official train -> stratified dev carved from it (10 %, seed 42) -> fine-tune the
packaged MiniLM with params.yaml's ``train`` section -> evaluate the best dev epoch on the official
test split. Prints the dev figures of the selected epoch, test accuracy and macro-F1 and training
minutes; ``--record`` adds a row per data set (date, data set, overrides, figures) to the accuracy
table of docs/benchmarks.md.

Settings are chosen on the dev carve only (docs/benchmarks.md, top): compare candidates with
``--dev-only`` (the test split is not scored), then run the chosen setting once without it to
report its test figure.

    python bench/accuracy.py [--datasets banking77,hwu64] [--set train.epochs=8 ...] [--dev-only | --record]

Data (CC BY 4.0, from ../shared/datasets): BANKING77 (Casanueva et al., 2020, "Efficient Intent
Detection with Dual Sentence Encoders"), HWU64 (Liu et al., 2019, "Benchmarking Natural Language
Understanding Services for building Conversational Agents").
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "datasets"
# Test accuracy (%) for reference: BANKING77 BERT-base / DistilBERT as listed in ../shared/datasets/README.md,
# BERT-large 93.7 and the plain-loop floors as set in the project's issue tracker (goal and minimum).
REFERENCES = {
    "banking77": [("BERT-large (goal)", 93.7), ("BERT-base", 93.1), ("DistilBERT", 92.5), ("plain-loop floor", 92.6)],
    "hwu64": [("goal", 92.5), ("plain-loop floor", 91.8)],
}


def run(name: str, overrides: list[str], dev_ratio: float, score_test: bool = True) -> dict[str, Any]:
    from intent_mlops.config.params import load_config, parse_overrides
    from intent_mlops.data.io import read_csv
    from intent_mlops.data.split import stratified_split
    from intent_mlops.evaluation.evaluate import evaluate_model_dir
    from intent_mlops.train.fit import texts_labels, train_on_frames

    cfg = load_config(REPO / "params.yaml", parse_overrides(overrides))
    train_df = read_csv(SHARED / name / "train.csv")
    parts = stratified_split(train_df, dev_ratio=dev_ratio, test_ratio=0.0, seed=42)
    tr, dev = parts["train"], parts["dev"]
    test: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        result = train_on_frames(cfg.train, tr, dev, Path(tmp) / "run", cache_dir=REPO / ".intent-mlops" / "cache")
        minutes = (time.perf_counter() - t) / 60
        if score_test:
            test_df = read_csv(SHARED / name / "test.csv")
            rep = evaluate_model_dir(result.model_dir, {"test": texts_labels(test_df)}, cfg.train)["test"]
            test = {"test_rows": len(test_df), "test_accuracy": 100 * rep.accuracy, "test_macro_f1": 100 * rep.macro_f1}
    best = next(h for h in result.history if h["epoch"] == result.best_epoch)
    return {
        "dataset": name,
        "train_rows": len(tr),
        "dev_rows": len(dev),
        "dev_accuracy": 100 * best["dev_accuracy"],
        "dev_macro_f1": 100 * best["dev_macro_f1"],
        **test,
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "train_minutes": result.train_seconds / 60,
        "wall_minutes": minutes,
        "examples_per_s": result.examples_per_second,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", default="banking77,hwu64")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--dev-ratio", type=float, default=0.1, help="share of train carved out as the dev set")
    p.add_argument("--record", action="store_true", help="add the results to the accuracy table of docs/benchmarks.md")
    p.add_argument("--dev-only", action="store_true",
                   help="score the dev carve only (for choosing a setting); the test split is not scored")  # fmt: skip
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    if args.dev_only and args.record:
        p.error("--record reports test figures: run the chosen setting once without --dev-only")
    from intent_mlops.config.environment import apply_defaults

    apply_defaults(REPO)
    rows = []
    for name in args.datasets.split(","):
        if not (SHARED / name / "train.csv").exists():
            print(f"{SHARED / name} not found", file=sys.stderr)
            return 2
        r = run(name, args.overrides + ["train.progress=false"], args.dev_ratio, score_test=not args.dev_only)
        rows.append(r)
        refs = ", ".join(f"{n} {v:.1f}" for n, v in REFERENCES.get(name, []))
        scored = f"dev accuracy {r['dev_accuracy']:.2f} %, macro-F1 {r['dev_macro_f1']:.2f} %"
        if not args.dev_only:
            scored += f"; test accuracy {r['test_accuracy']:.2f} %, macro-F1 {r['test_macro_f1']:.2f} %"
        print(
            f"{name}: {scored} (best epoch {r['best_epoch']}/{r['epochs_run']}, {r['train_minutes']:.1f} min "
            f"training, {r['examples_per_s']:.0f} examples/s)" + ("" if args.dev_only else f" | references: {refs}"),
            flush=True,
        )
    command = "python bench/accuracy.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    if args.json:
        args.json.write_text(json.dumps({"command": command, "rows": rows}, indent=2))
    if args.record:
        today = dt.date.today().isoformat()
        changed = " ".join(o.removeprefix("train.") for o in args.overrides) or "defaults"
        if args.dev_ratio != 0.1:
            changed += f" (dev {args.dev_ratio:.0%})"
        lines = [
            f"| {today} | {r['dataset']} | {changed} | {r['test_accuracy']:.2f} | {r['test_macro_f1']:.2f} | "
            f"{r['best_epoch']}/{r['epochs_run']} | {r['train_minutes']:.1f} | {r['examples_per_s']:.0f} |"
            for r in rows
        ]
        doc = REPO / "docs" / "benchmarks.md"
        text = doc.read_text().splitlines()
        last_row = max((i for i, line in enumerate(text) if line.startswith("| 20")), default=len(text) - 1)
        doc.write_text("\n".join(text[: last_row + 1] + lines + text[last_row + 1 :]) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
