"""Inference benchmarks on BANKING77 (../shared/datasets): speed of every prediction path, and out-of-scope scores.

Three sub-commands, each one run:

    python bench/inference.py train --out DIR [--epochs 1]            # fine-tune MiniLM on all 77 intents
    python bench/inference.py train --out DIR --held-out              # ... on 50 intents (see "ood" below)
    python bench/inference.py train --out DIR --held-out --keep-layers 2   # (e) a smaller model: 2 of 6 layers
    python bench/inference.py speed --model-dir DIR [--rows 1000] [--repeat 2]   # (a) (b) (c) (d) side by side
    python bench/inference.py ood --model-dir DIR                     # out-of-scope scores at the dev threshold
    python bench/inference.py batch --model-dir DIR [--rows 200000]   # streamed file: peak RSS, rows/s
    python bench/inference.py endpoint --model-dir DIR                # latency through the HTTP endpoint

``speed`` runs each variant in its own subprocess (so peak RSS is that variant's), in ``--repeat``
interleaved rounds (each variant's best round is reported; the machine is shared): (a) the MLflow
transformers flavour loaded as pyfunc (what a user gets from the registry today), (b) this project's
fp32 torch Predictor, (c) ONNX fp32 (onnxruntime transformer-optimised graph), (d) ONNX dynamic int8,
(b16) the torch model cast to bfloat16 (fast only on CPUs with AMX / AVX512-BF16 units).
It reports batch throughput (utterances/s over the test rows), single-request p50/p95 latency
(in-process: one utterance per call, no HTTP), peak RSS, accuracy, and agreement with (b).

``ood`` protocol (unseen intents, as in "known intent ratio" studies): the 77 intents are shuffled
with a fixed seed; 19 (25 %) are *test-unseen* (never trained on, their test rows are scored as out of
scope), 8 are *dev-unseen* (never trained on; their train rows are the dev set's out-of-scope rows),
the other 50 are known (trained on; 10 % of their train rows are the dev set). Temperature, Mahalanobis
means/covariance, the threshold (in-scope dev recall kept at >= 98 % of its unthresholded value) and the
choice of score (dev AUROC against the dev-unseen rows) all come from train + dev; test is scored once.
The dev-unseen intents' test rows are left out of test, so test's out-of-scope rows are intents no
choice ever saw.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "datasets"
sys.path.insert(0, str(REPO))

N_TEST_UNSEEN, N_DEV_UNSEEN, SPLIT_SEED = 19, 8, 0


def banking77(split: str) -> Any:
    from intent_mlops.data.io import read_csv

    return read_csv(SHARED / "banking77" / f"{split}.csv")


def intent_groups() -> dict[str, list[str]]:
    """known / dev_unseen / test_unseen intents of the held-out protocol (fixed seed)."""
    intents = sorted(banking77("train")["label"].unique())
    order = np.random.default_rng(SPLIT_SEED).permutation(len(intents))
    shuffled = [intents[i] for i in order]
    return {
        "test_unseen": sorted(shuffled[:N_TEST_UNSEEN]),
        "dev_unseen": sorted(shuffled[N_TEST_UNSEEN : N_TEST_UNSEEN + N_DEV_UNSEEN]),
        "known": sorted(shuffled[N_TEST_UNSEEN + N_DEV_UNSEEN :]),
    }


def held_out_frames() -> dict[str, Any]:
    """train / dev (known intents) / dev_oos (dev-unseen train rows) / test (known + test-unseen as oos)."""
    from intent_mlops.data.split import stratified_split

    g = intent_groups()
    train = banking77("train")
    parts = stratified_split(train[train["label"].isin(g["known"])], dev_ratio=0.1, test_ratio=0.0, seed=42)
    test = banking77("test")
    test = test[~test["label"].isin(g["dev_unseen"])].copy()
    test["label"] = test["label"].where(test["label"].isin(g["known"]), "oos")
    return {
        "train": parts["train"],
        "dev": parts["dev"],
        "dev_oos": train[train["label"].isin(g["dev_unseen"])],
        "test": test,
        "groups": g,
    }


def cmd_train(args: argparse.Namespace) -> int:
    from intent_mlops.config.params import TrainConfig
    from intent_mlops.data.split import stratified_split
    from intent_mlops.train.loop import train

    if args.held_out:
        frames = held_out_frames()
        tr, dev = frames["train"], frames["dev"]
    else:
        parts = stratified_split(banking77("train"), dev_ratio=0.1, test_ratio=0.0, seed=42)
        tr, dev = parts["train"], parts["dev"]
    cfg = TrainConfig(
        epochs=args.epochs, progress=False, checkpoint_every_steps=0, num_threads=args.threads, max_length=64,
        keep_layers=args.keep_layers,
    )  # fmt: skip
    t = time.perf_counter()
    result = train(
        cfg,
        tr["text"].tolist(),
        tr["label"].tolist(),
        dev["text"].tolist(),
        dev["label"].tolist(),
        args.out,
        cache_dir=REPO / ".intent-mlops" / "cache",
    )
    print(
        f"trained {len(tr)} rows x {result.epochs_run} epochs in {(time.perf_counter() - t) / 60:.1f} min; "
        f"best dev macro-F1 {result.best_dev_macro_f1:.4f}; model in {result.model_dir}",
        flush=True,
    )
    return 0


# ----------------------------------------------------------------------------------------------- ood


def encode(model_dir: Path, texts: list[str], threads: int) -> dict[str, np.ndarray]:
    """fp32 torch logits + CLS and mean-pooled last hidden states, length-sorted batches."""
    import torch

    from intent_mlops.inference.ood import pool
    from intent_mlops.inference.predictor import Predictor

    torch.set_num_threads(threads)
    p = Predictor.load(model_dir, calibration=False)
    model = p.backend.model  # type: ignore[attr-defined]
    ids = p.tokenizer(texts, truncation=True, max_length=p.max_length)["input_ids"]
    order = np.argsort([len(x) for x in ids], kind="stable")
    out = {k: [None] * len(texts) for k in ("logits", "cls", "mean")}
    with torch.inference_mode():
        for s in range(0, len(order), 128):
            idx = order[s : s + 128]
            width = max(len(ids[i]) for i in idx)
            x = np.full((len(idx), width), p.pad_id, dtype=np.int64)
            m = np.zeros_like(x)
            for r, i in enumerate(idx):
                x[r, : len(ids[i])], m[r, : len(ids[i])] = ids[i], 1
            o = model(input_ids=torch.from_numpy(x), attention_mask=torch.from_numpy(m), output_hidden_states=True)
            h = o.hidden_states[-1].numpy()
            for name, arr in (("logits", o.logits.numpy()), ("cls", pool(h, m, "cls")), ("mean", pool(h, m, "mean"))):
                for r, i in enumerate(idx):
                    out[name][i] = arr[r]
    return {k: np.stack(v) for k, v in out.items()}


def cmd_ood(args: argparse.Namespace) -> int:
    from intent_mlops.inference import ood
    from intent_mlops.inference.calibrate import _class_ids
    from intent_mlops.model.labels import OOS_DATA

    t0 = time.perf_counter()
    f = held_out_frames()
    model_dir = args.model_dir
    from transformers import AutoConfig

    names = [AutoConfig.from_pretrained(model_dir).id2label[i] for i in range(len(f["groups"]["known"]))]
    if sorted(names) != f["groups"]["known"]:
        print("the model's labels are not the 50 known intents of the held-out protocol", file=sys.stderr)
        return 2
    dev_texts = f["dev"]["text"].tolist() + f["dev_oos"]["text"].tolist()
    dev_labels = f["dev"]["label"].tolist() + [OOS_DATA] * len(f["dev_oos"])
    sets = {
        "train": (f["train"]["text"].tolist(), f["train"]["label"].tolist()),
        "dev": (dev_texts, dev_labels),
        "test": (f["test"]["text"].tolist(), f["test"]["label"].tolist()),
    }
    if args.cache and args.cache.exists():  # numeric arrays only (no pickle)
        with np.load(args.cache, allow_pickle=False) as z:
            enc = {k: {p: z[f"{k}.{p}"] for p in ("logits", "cls", "mean")} for k in sets}
    else:
        enc = {k: encode(model_dir, t, args.threads) for k, (t, _) in sets.items()}
        if args.cache:
            np.savez(args.cache, **{f"{k}.{p}": a for k, d in enc.items() for p, a in d.items()})
    ys = {k: _class_ids(lab, names) for k, (_, lab) in sets.items()}
    print(f"encoded train/dev/test ({', '.join(str(len(v[0])) for v in sets.values())} rows) in "
          f"{(time.perf_counter() - t0) / 60:.1f} min", flush=True)  # fmt: skip
    test_logits, yt = enc["test"]["logits"], ys["test"]
    true_oos, pred = yt < 0, test_logits.argmax(1)
    correct = pred == yt
    msp_test = ood.max_softmax(test_logits)
    command = "python bench/inference.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    print(f"\n{dt.date.today().isoformat()}, `{command}`")
    rows: list[dict[str, Any]] = []
    saved: Any = None
    for ratio in [float(r) for r in args.ratios.split(",")]:
        fitted: dict[str, Any] = {}
        for pooling in ("cls", "mean"):
            _, cands = ood.calibrate_arrays(
                enc["train"][pooling], ys["train"], enc["dev"]["logits"], enc["dev"][pooling], ys["dev"],
                pooling=pooling, target_in_scope_recall_ratio=ratio,
            )  # fmt: skip
            for name, cand in cands.items():
                if name != "mahalanobis" and pooling == "mean":
                    continue  # logit scores do not depend on the pooling
                fitted[f"mahalanobis[{pooling}]" if name == "mahalanobis" else name] = (name, pooling, cand)
        chosen = max(fitted, key=lambda k: fitted[k][2].dev.auroc)
        calibs = {
            key: ood.calibrate_arrays(
                enc["train"][pooling], ys["train"], enc["dev"]["logits"], enc["dev"][pooling], ys["dev"],
                pooling=pooling, target_in_scope_recall_ratio=ratio, score=name,
            )[0]
            for key, (name, pooling, _) in fitted.items()
        }  # fmt: skip
        saved = saved or calibs[chosen]
        table = []
        for key, (_, pooling, cand) in fitted.items():
            calib = calibs[key]
            s = calib.scores(test_logits, enc["test"][pooling])
            m = ood.ood_metrics(true_oos, calib.rejects(s), correct, s)
            _, msp_recall = ood.oos_recall_at_in_scope_accuracy(msp_test, correct, true_oos, m.in_scope_accuracy)
            table.append({
                "ratio": ratio, "score": key, "dev_auroc": cand.dev.auroc,
                "dev_in_scope_acc": cand.dev.in_scope_accuracy, "dev_oos_recall": cand.dev.oos_recall,
                "threshold": cand.threshold,
                **{f"test_{k}": v for k, v in m.to_dict().items()},
                "msp_oos_recall_same_in_scope": msp_recall, "chosen": key == chosen,
            })  # fmt: skip
        first = table[0]
        print(f"\nmodel: {model_dir} ({len(names)} known intents); train {len(sets['train'][0])}, dev "
              f"{len(f['dev'])} in-scope + {len(f['dev_oos'])} out-of-scope (8 dev-unseen intents), test "
              f"{int((~true_oos).sum())} in-scope + {int(true_oos.sum())} out-of-scope (19 test-unseen intents); "
              f"threshold rule: in-scope dev recall >= {ratio:.0%} of unthresholded; fitted temperature "
              f"{calibs['temperature'].temperature:.3f}; test in-scope accuracy without rejection "
              f"{100 * first['test_in_scope_accuracy_unthresholded']:.2f} %\n")  # fmt: skip
        print(
            "| score | dev AUROC | dev oos recall % | test in-scope accuracy % | test oos recall % "
            "| test oos precision % | test AUROC | max-softmax oos recall % at the same in-scope accuracy |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for r in table:
            print(f"| {r['score']}{' (chosen on dev)' if r['chosen'] else ''} | {r['dev_auroc']:.4f} | "
                  f"{100 * r['dev_oos_recall']:.2f} | {100 * r['test_in_scope_accuracy']:.2f} | "
                  f"{100 * r['test_oos_recall']:.2f} | {100 * r['test_oos_precision']:.2f} | {r['test_auroc']:.4f} | "
                  f"{100 * r['msp_oos_recall_same_in_scope']:.2f} |")  # fmt: skip
        rows += table
    if args.json:
        args.json.write_text(json.dumps({"command": command, "rows": rows}, indent=2, default=float))
    if args.save_calibration:
        print(f"\nsaving the chosen calibration ({saved.score}, {saved.pooling}) into {model_dir}")
        saved.save(model_dir)
    print(f"\ntotal {(time.perf_counter() - t0) / 60:.1f} min", flush=True)
    return 0


def cmd_ood_data(args: argparse.Namespace) -> int:
    """A model's stored calibration on a labelled test CSV that has ``oos`` rows (the default data set),
    next to plain max softmax at the same in-scope accuracy (the model's ``oos`` class rejects for both)."""
    from transformers import AutoConfig

    from intent_mlops.data.io import read_csv
    from intent_mlops.inference import ood
    from intent_mlops.inference.calibrate import _class_ids
    from intent_mlops.model.labels import OOS_DATA, OOS_PREDICTED

    config = AutoConfig.from_pretrained(args.model_dir)
    names = [config.id2label[i] for i in range(len(config.id2label))]
    calib = ood.OodCalibration.load(args.model_dir)
    if calib is None:
        print(f"{args.model_dir}: no ood.json (a model from the training flow has one)", file=sys.stderr)
        return 2
    test = read_csv(args.test)
    labels = test["label"].tolist()
    enc = encode(args.model_dir, test["text"].tolist(), args.threads)
    logits, y = enc["logits"], _class_ids(labels, names)
    true_oos = np.array([lab == OOS_DATA for lab in labels])
    argmax = logits.argmax(1)
    argmax_oos = argmax == names.index(OOS_PREDICTED) if OOS_PREDICTED in names else np.zeros(len(labels), bool)
    correct = argmax == y
    s = calib.scores(logits, enc[calib.pooling])
    m = ood.ood_metrics(true_oos, calib.rejects(s) | argmax_oos, correct, s, argmax_oos)
    msp = ood.max_softmax(logits)
    _, msp_recall = ood.oos_recall_at_in_scope_accuracy(msp, correct, true_oos, m.in_scope_accuracy, argmax_oos)
    command = "python bench/inference.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    print(f"{dt.date.today().isoformat()}, `{command}`\n")
    print(f"{args.test}: {m.n_in_scope} in-scope + {m.n_oos} oos rows; model classes {len(names)} "
          f"({'with' if OOS_PREDICTED in names else 'without'} an oos class); stored score {calib.score} "
          f"({calib.pooling}), threshold {calib.threshold:.4f}\n")  # fmt: skip
    print("| rule | in-scope accuracy % | oos recall % | oos precision % | AUROC |")
    print("|---|---:|---:|---:|---:|")
    print(f"| unthresholded (oos class only) | {100 * m.in_scope_accuracy_unthresholded:.2f} | "
          f"{100 * float(argmax_oos[true_oos].mean()):.2f} | | |")  # fmt: skip
    print(f"| stored calibration ({calib.score}) | {100 * m.in_scope_accuracy:.2f} | {100 * m.oos_recall:.2f} | "
          f"{100 * m.oos_precision:.2f} | {m.auroc:.4f} |")  # fmt: skip
    print(f"| max softmax at the same in-scope accuracy | {100 * m.in_scope_accuracy:.2f} | {100 * msp_recall:.2f} | "
          f"| {ood.auroc(-msp[true_oos], -msp[~true_oos]):.4f} |")  # fmt: skip
    return 0


# --------------------------------------------------------------------------------------------- speed

VARIANTS = {
    "a": "(a) MLflow transformers flavour as pyfunc",
    "b": "(b) Predictor, torch fp32",
    "c": "(c) Predictor, ONNX fp32",
    "d": "(d) Predictor, ONNX int8",
    "bf16": "(b16) Predictor, torch bf16",
}
BACKEND_OF = {"c": "fp32", "d": "int8", "bf16": "bf16"}  # Predictor.load(onnx_variant=...) of each variant


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM: reset at exec, unlike ru_maxrss, which keeps the parent's)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_variant(args: argparse.Namespace) -> int:
    """Child process: one variant, all figures in a JSON file."""
    texts = json.loads(Path(args.texts).read_text())
    t0 = time.perf_counter()
    if args.variant == "a":
        import mlflow

        model = mlflow.pyfunc.load_model(str(args.model_dir))

        def batch(xs: list[str]) -> list[str]:
            out = model.predict(xs)
            return [str(x) for x in (out["label"] if hasattr(out, "columns") else [o["label"] for o in out])]

        def top1(xs: list[str]) -> list[str]:
            return batch(xs)
    else:
        from intent_mlops.inference.predictor import Predictor
        from intent_mlops.inference.validation import Limits

        p = Predictor.load(
            args.model_dir, use_onnx=args.variant in BACKEND_OF, onnx_variant=BACKEND_OF.get(args.variant),
            num_threads=args.threads, limits=Limits(max_batch=max(len(texts), 1)),
        )  # fmt: skip

        def batch(xs: list[str]) -> list[str]:
            return [str(x) for x in p.predict_columns(xs, top_k=1)["label"]]

        def top1(xs: list[str]) -> list[str]:
            return [str(x) for x in p.predict_columns(xs, top_k=1)["top_labels"][:, 0]]

    load_s = time.perf_counter() - t0
    batch(texts[:64])  # warm-up
    t = time.perf_counter()
    labels = batch(texts)
    batch_s = time.perf_counter() - t
    argmax = labels if args.variant == "a" else top1(texts)
    lat = []
    for text in texts[: args.single]:
        t = time.perf_counter()
        batch([text])
        lat.append(time.perf_counter() - t)
    Path(args.result).write_text(json.dumps({
        "load_s": load_s, "rows": len(texts), "batch_s": batch_s, "throughput": len(texts) / batch_s,
        "p50_ms": 1000 * float(np.percentile(lat, 50)), "p95_ms": 1000 * float(np.percentile(lat, 95)),
        "peak_rss_mb": peak_rss_mb(), "labels": labels, "argmax": argmax,
    }))  # fmt: skip
    return 0


def cmd_speed(args: argparse.Namespace) -> int:
    import tempfile

    import mlflow
    from transformers import AutoConfig

    from intent_mlops.data.split import stratified_split
    from intent_mlops.inference.onnx_export import export_variants
    from intent_mlops.inference.predictor import ONNX_DIR, ONNX_REPORT
    from intent_mlops.model.labels import OOS_DATA, OOS_PREDICTED

    t_all, load0 = time.perf_counter(), os.getloadavg()
    model_dir = args.model_dir
    cfg = AutoConfig.from_pretrained(model_dir)
    known = {cfg.id2label[i] for i in range(cfg.num_labels)}
    known_data = {OOS_DATA if k == OOS_PREDICTED else k for k in known}
    test = banking77("test")
    if args.rows:
        test = test.sample(n=min(args.rows, len(test)), random_state=0)
    texts, truth = test["text"].tolist(), test["label"].tolist()
    # ONNX variants, checked against fp32 torch on the dev carve (rows of intents the model knows)
    report_path = model_dir / ONNX_DIR / ONNX_REPORT
    if not report_path.exists() or args.re_export:
        if known_data == set(intent_groups()["known"]):  # a `train --held-out` model: its own dev carve
            dev = held_out_frames()["dev"]
        else:
            dev = stratified_split(banking77("train"), dev_ratio=0.1, test_ratio=0.0, seed=42)["dev"]
            dev = dev[dev["label"].isin(known_data)]
        t = time.perf_counter()
        export_variants(model_dir, dev["text"].tolist(), dev["label"].tolist(), num_threads=args.threads)
        print(f"exported + checked ONNX on {len(dev)} dev rows in {time.perf_counter() - t:.0f} s", flush=True)
    onnx_report = json.loads(report_path.read_text())
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        (tmp_path / "texts.json").write_text(json.dumps(texts))
        # (a): what registering gives today, the transformers flavour (pipeline), saved locally
        from transformers import pipeline

        from intent_mlops.inference.pyfunc import default_pip_requirements
        from intent_mlops.model.loading import load_model

        tok, model = load_model(str(model_dir))
        mlflow.transformers.save_model(
            transformers_model=pipeline("text-classification", model=model, tokenizer=tok, device="cpu"),
            path=str(tmp_path / "transformers-flavour"), task="text-classification",
            pip_requirements=default_pip_requirements(onnx=False),
        )  # fmt: skip
        del model
        rounds: dict[str, list[float]] = {}
        for rnd in range(args.repeat):  # interleaved rounds: a slow spell of the machine hits every variant
            for v in args.variants.split(","):
                src = tmp_path / "transformers-flavour" if v == "a" else model_dir
                out = tmp_path / f"{v}.json"
                cmd = [sys.executable, __file__, "_variant", "--variant", v, "--model-dir", str(src), "--texts",
                       str(tmp_path / "texts.json"), "--result", str(out), "--single", str(args.single),
                       "--threads", str(args.threads)]  # fmt: skip
                t = time.perf_counter()
                subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
                r = json.loads(out.read_text())
                rounds.setdefault(v, []).append(r["throughput"])
                if v not in results or r["throughput"] > results[v]["throughput"]:
                    results[v] = r  # the variant's best round
                print(f"round {rnd + 1} {VARIANTS[v]}: {r['throughput']:.0f}/s, p50 {r['p50_ms']:.1f} ms "
                      f"({time.perf_counter() - t:.0f} s)", flush=True)  # fmt: skip
    ref = results.get("b")
    truth_pred = [OOS_PREDICTED if y == OOS_DATA else y for y in truth]
    scored = [i for i, y in enumerate(truth) if y in known_data]
    command = "python bench/inference.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    print(f"\n{dt.datetime.now().strftime('%Y-%m-%d %H:%M')}, `{command}`, {os.cpu_count()} CPUs, "
          f"{args.threads} threads; load average at start {load0[0]:.1f}, at end {os.getloadavg()[0]:.1f} "
          f"(other processes share these cores)")  # fmt: skip
    print(f"model: {model_dir} ({len(known)} intents); {len(texts)} BANKING77 test rows, accuracy on the "
          f"{len(scored)} whose intent the model knows (top intent, before out-of-scope rejection); latency: "
          f"one utterance per call, in process (no HTTP), {args.single} calls; fused operators "
          f"{onnx_report['fused_operators']}\n")  # fmt: skip
    print(
        "| variant | batch utterances/s | x (a) | p50 ms | p95 ms | peak RSS MB | accuracy % | agreement with (b) % |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    base = results.get("a", {}).get("throughput")
    for v, r in results.items():
        acc = 100 * float(np.mean([r["argmax"][i] == truth_pred[i] for i in scored])) if scored else float("nan")
        agree = 100 * float(np.mean([a == b for a, b in zip(r["argmax"], ref["argmax"], strict=True)])) if ref else 0
        r["accuracy"], r["agreement"] = acc, agree
        ratio = r["throughput"] / base if base else float("nan")
        print(f"| {VARIANTS[v]} | {r['throughput']:.0f} | {ratio:.2f} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | "
              f"{r['peak_rss_mb']:.0f} | {acc:.2f} | {agree:.2f} |")  # fmt: skip
    if args.repeat > 1:
        print("\nthroughput per round: " + "; ".join(
            f"({v}) " + " / ".join(f"{x:.0f}" for x in xs) for v, xs in rounds.items()))  # fmt: skip
    if ref and "d" in results:
        oos_share = {
            v: float(np.mean([x == OOS_PREDICTED for x in results[v]["labels"]]))
            for v in ("b", "c", "d", "bf16")
            if v in results
        }
        print(f"\nout-of-scope share of answers: {', '.join(f'({v}) {100 * s:.1f} %' for v, s in oos_share.items())}")
    from intent_mlops.inference.cpu import bf16_matmul, int8_dot_product
    from intent_mlops.inference.predictor import onnx_folder, passing_variants

    folder = onnx_folder(model_dir)
    batch = (passing_variants(folder, "throughput") if folder else []) or ["torch fp32"]
    online = (passing_variants(folder, "latency") if folder else []) or ["torch fp32"]
    print(f"\nthis CPU: int8 dot product (VNNI/AMX) {int8_dot_product()}, bf16 units {bf16_matmul()}; "
          f"int8 weights {onnx_report['variants'].get('int8', {}).get('weights', '?')}; the version would "
          f"run {batch[0]} in batches and {online[0]} online")  # fmt: skip
    print("variant checks on dev: " + "; ".join(
        f"{n}: agreement {100 * c['agreement']:.2f} %, accuracy delta {100 * (c['accuracy_delta'] or 0):+.2f} pt, "
        f"passed {c['passed']}, {c['bytes'] / 1e6:.1f} MB" for n, c in onnx_report["variants"].items()))  # fmt: skip
    print(f"total {(time.perf_counter() - t_all) / 60:.1f} min", flush=True)
    if args.json:
        slim = {v: {k: x for k, x in r.items() if k not in ("labels", "argmax")} for v, r in results.items()}
        args.json.write_text(json.dumps({"command": command, "results": slim, "onnx": onnx_report}, indent=2))
    return 0


# -------------------------------------------------------------------------------------------- endpoint

_SERVE = """
import sys, mlflow, uvicorn
from intent_mlops.inference.follow import Loaded, ServedModel
from intent_mlops.inference.server import build_app
from intent_mlops.monitoring.log import FileStore, PredictionLog
model = mlflow.pyfunc.load_model(sys.argv[1])
if len(sys.argv) > 3:  # serve-model's wrapper, with the prediction log in folder argv[4] or without ("-")
    log = PredictionLog(FileStore(sys.argv[4])) if sys.argv[4] != "-" else None
    model = ServedModel(Loaded(model, "1", "bench/1"), log)
uvicorn.run(build_app(model), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""


def _endpoint_latency(
    model_uri: str,
    env: dict[str, str],
    texts: list[str],
    warmup: int,
    bare_list: bool = False,
    log_dir: str | None = None,
) -> dict[str, Any]:
    """Serve ``model_uri`` with this project's endpoint (MLflow's scoring app, see ``serve-model``) in a
    child process; time one-utterance POSTs to ``/invocations`` over one keep-alive connection."""
    import http.client
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    wrapped = [] if log_dir is None else ["served", log_dir]
    proc = subprocess.Popen([sys.executable, "-c", _SERVE, model_uri, str(port), *wrapped], env=env, cwd=REPO)
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                conn.request("GET", "/ping")
                ping = conn.getresponse()
                ping.read()
                if ping.status == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the endpoint for {model_uri} did not start")
            time.sleep(0.5)
        lat, statuses = [], []
        for i, text in enumerate(texts[:warmup] + texts):
            body = json.dumps({"inputs": [text]} if bare_list else {"inputs": {"text": [text]}})
            t = time.perf_counter()
            conn.request("POST", "/invocations", body=body, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            if i >= warmup:
                lat.append(time.perf_counter() - t)
                statuses.append(resp.status)
        return {
            "p50_ms": 1000 * float(np.percentile(lat, 50)), "p95_ms": 1000 * float(np.percentile(lat, 95)),
            "p99_ms": 1000 * float(np.percentile(lat, 99)), "requests": len(lat),
            "non_200": sum(1 for s in statuses if s != 200), "latencies": lat,
        }  # fmt: skip
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cmd_endpoint(args: argparse.Namespace) -> int:
    """Single-request latency through the HTTP endpoint: (a) the transformers flavour as MLflow serves
    it, and this project's pyfunc (the variant the version would serve, and fp32 torch)."""
    import tempfile

    import mlflow
    from transformers import pipeline

    from intent_mlops.inference.pyfunc import USE_ONNX_ENV, default_pip_requirements, log_pyfunc
    from intent_mlops.model.loading import load_model

    load0 = os.getloadavg()
    texts = banking77("test").sample(n=args.requests, random_state=1)["text"].tolist()
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        mlflow.set_tracking_uri(uri)
        env["MLFLOW_TRACKING_URI"] = uri
        tok, model = load_model(str(args.model_dir))
        flavour = Path(tmp) / "transformers-flavour"
        mlflow.transformers.save_model(
            transformers_model=pipeline("text-classification", model=model, tokenizer=tok, device="cpu"),
            path=str(flavour), task="text-classification", pip_requirements=default_pip_requirements(onnx=False),
        )  # fmt: skip
        del model
        exp = mlflow.create_experiment("bench-endpoint", artifact_location=(Path(tmp) / "artifacts").as_uri())
        with mlflow.start_run(experiment_id=exp):
            info = log_pyfunc(args.model_dir, name="model")
        if not args.log_overhead_only:
            # the transformers flavour's signature takes a bare list of strings
            rows["(a) MLflow transformers flavour"] = _endpoint_latency(str(flavour), env, texts, args.warmup, True)
            served = _endpoint_latency(info.model_uri, env, texts, args.warmup)
            rows[f"this project's pyfunc, the variant it serves online ({_served_backend(args.model_dir)})"] = served
            rows["this project's pyfunc, torch fp32"] = _endpoint_latency(
                info.model_uri, {**env, USE_ONNX_ENV: "0"}, texts, args.warmup
            )
        # serve-model as it runs (ServedModel), without and with the prediction log, interleaved rounds
        logged: dict[str, list[dict[str, Any]]] = {"without": [], "with": []}
        for r in range(args.rounds):
            for key in ("without", "with") if r % 2 == 0 else ("with", "without"):
                folder = "-" if key == "without" else str(Path(tmp) / "prediction-log")
                logged[key].append(_endpoint_latency(info.model_uri, env, texts, args.warmup, log_dir=folder))
        for key, runs in logged.items():
            lat = [x for run in runs for x in run["latencies"]]
            rows[f"serve-model ({_served_backend(args.model_dir)}), {key} the prediction log"] = {
                "p50_ms": 1000 * float(np.percentile(lat, 50)), "p95_ms": 1000 * float(np.percentile(lat, 95)),
                "p99_ms": 1000 * float(np.percentile(lat, 99)), "requests": len(lat),
                "non_200": sum(run["non_200"] for run in runs),
                "p50_by_round": [1000 * float(np.percentile(run["latencies"], 50)) for run in runs],
            }  # fmt: skip
    command = "python bench/inference.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    print(f"\n{dt.datetime.now().strftime('%Y-%m-%d %H:%M')}, `{command}`, {os.cpu_count()} CPUs, "
          f"{args.threads} threads; load average at start {load0[0]:.1f}, at end {os.getloadavg()[0]:.1f}; "
          f"{args.requests} BANKING77 test utterances, one per POST /invocations over one keep-alive "
          f"connection, after {args.warmup} warm-up requests\n")  # fmt: skip
    print("| endpoint | p50 ms | p95 ms | p99 ms | requests | non-200 |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in rows.items():
        print(f"| {name} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} | {r['p99_ms']:.2f} | {r['requests']} | "
              f"{r['non_200']} |")  # fmt: skip
    without, with_log = (rows[k] for k in rows if "the prediction log" in k)  # in that order (dict above)
    pairs = zip(with_log["p50_by_round"], without["p50_by_round"], strict=True)
    print(f"\nprediction log overhead at p50: {with_log['p50_ms'] - without['p50_ms']:+.2f} ms over "
          f"{args.rounds} interleaved rounds (per round, with - without: "
          f"{', '.join(f'{a - b:+.2f}' for a, b in pairs)} ms)")  # fmt: skip
    return 0


def _served_backend(model_dir: Path) -> str:
    from intent_mlops.inference.predictor import onnx_folder, passing_variants, variant_backend

    folder = onnx_folder(model_dir)
    ok = passing_variants(folder, prefer="latency") if folder else []
    return variant_backend(ok[0]) if ok else "torch-fp32"


def cmd_batch(args: argparse.Namespace) -> int:
    """``predict_file`` over ``--rows`` rows (BANKING77 test texts repeated) in a child process: its peak
    RSS (the child's ``ru_maxrss``, so this process's memory is not counted) and rows/s."""
    import resource
    import tempfile

    texts = banking77("test")["text"].tolist()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "input.csv"
        reps = -(-args.rows // len(texts))
        import pandas as pd

        pd.DataFrame({"id": range(args.rows), "text": (texts * reps)[: args.rows]}).to_csv(src, index=False)
        out = Path(tmp) / "output.parquet"
        code = "\n".join([
            f"import sys, json; sys.path.insert(0, {str(REPO)!r})",
            f"import torch; torch.set_num_threads({args.threads})",
            "from intent_mlops.inference.predictor import Predictor",
            "from intent_mlops.inference.batch import predict_file",
            f"p = Predictor.load({str(args.model_dir)!r}, use_onnx={not args.torch!r}, max_length=64)",
            f"r = predict_file(p, {str(src)!r}, {str(out)!r}, chunk_rows={args.chunk_rows}, progress=True)",
            "print(json.dumps({'rows': r.rows, 'seconds': r.seconds, 'backend': p.backend_name, "
            "'oos_rate': r.out_of_scope_rate}))",
        ])  # fmt: skip
        load0 = os.getloadavg()[0]
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        r = json.loads(done.stdout.strip().splitlines()[-1])
        bar = [line for line in done.stderr.replace("\r", "\n").splitlines() if "row" in line][-1:]
        rows_out = len(pd.read_parquet(out, columns=["id"]))
    command = "python bench/inference.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    print(f"{dt.datetime.now().strftime('%Y-%m-%d %H:%M')}, `{command}`, load average {load0:.1f}")
    print("| rows | backend | chunk rows | seconds | rows/s | peak RSS MB | out-of-scope % | rows written |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    print(f"| {r['rows']} | {r['backend']} | {args.chunk_rows} | {r['seconds']:.0f} | {r['rows'] / r['seconds']:.0f} "
          f"| {peak_mb:.0f} | {100 * r['oos_rate']:.1f} | {rows_out} |")  # fmt: skip
    print(f"last progress line: {bar[0].strip() if bar else '(none)'}")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="fine-tune the packaged MiniLM on BANKING77")
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--epochs", type=int, default=1)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--held-out", action="store_true", help="train on the 50 known intents of the ood protocol")
    t.add_argument("--keep-layers", type=int, default=0, help="train.keep_layers: a smaller encoder (0: all)")
    o = sub.add_parser("ood", help="out-of-scope scores on the held-out-intents protocol")
    o.add_argument("--model-dir", type=Path, required=True, help="a model from `train --held-out`")
    o.add_argument(
        "--ratios", default="0.98,0.9", help="in-scope dev recall kept (share of unthresholded), each a table"
    )
    o.add_argument("--threads", type=int, default=2)
    o.add_argument("--json", type=Path, default=None)
    o.add_argument("--cache", type=Path, default=None, help="npz of the encodings: reused when it exists")
    o.add_argument("--save-calibration", action="store_true", help="write the dev-chosen calibration to the model")
    od = sub.add_parser("ood-data", help="a trained model's stored out-of-scope rule on a test CSV with oos rows")
    od.add_argument("--model-dir", type=Path, required=True, help="the model folder (config.json, ood.json)")
    od.add_argument("--test", type=Path, required=True, help="text,label CSV with `oos` rows, e.g. splits/test.csv")
    od.add_argument("--threads", type=int, default=2)
    sp = sub.add_parser("speed", help="(a)-(d) side by side on BANKING77 test rows")
    sp.add_argument("--model-dir", type=Path, required=True)
    sp.add_argument("--rows", type=int, default=0, help="test rows (0: all 3,080)")
    sp.add_argument("--single", type=int, default=200, help="single-utterance calls for the latency figures")
    sp.add_argument("--variants", default="a,b,c,d,bf16")
    sp.add_argument("--repeat", type=int, default=2, help="interleaved rounds; each variant's best is reported")
    sp.add_argument("--threads", type=int, default=2)
    sp.add_argument("--re-export", action="store_true")
    sp.add_argument("--json", type=Path, default=None)
    e = sub.add_parser("endpoint", help="single-request latency through the HTTP endpoint")
    e.add_argument("--model-dir", type=Path, required=True)
    e.add_argument("--requests", type=int, default=300)
    e.add_argument("--warmup", type=int, default=20)
    e.add_argument("--threads", type=int, default=2)
    e.add_argument("--rounds", type=int, default=4, help="interleaved rounds of serve-model without / with the log")
    e.add_argument("--log-overhead-only", action="store_true", help="only the serve-model rows with / without log")
    b = sub.add_parser("batch", help="predict_file over many rows: peak RSS and rows/s")
    b.add_argument("--model-dir", type=Path, required=True)
    b.add_argument("--rows", type=int, default=200_000)
    b.add_argument("--chunk-rows", type=int, default=8192)
    b.add_argument("--threads", type=int, default=2)
    b.add_argument("--torch", action="store_true", help="fp32 torch instead of the checked ONNX variant")
    v = sub.add_parser("_variant")  # internal: one variant in its own process
    v.add_argument("--variant", required=True)
    v.add_argument("--model-dir", type=Path, required=True)
    v.add_argument("--texts", required=True)
    v.add_argument("--result", required=True)
    v.add_argument("--single", type=int, default=200)
    v.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    from intent_mlops.config.environment import apply_defaults

    apply_defaults(REPO)
    if args.cmd == "_variant":
        import torch

        torch.set_num_threads(args.threads)
    commands = {
        "train": cmd_train, "ood": cmd_ood, "ood-data": cmd_ood_data, "speed": cmd_speed, "batch": cmd_batch,
        "endpoint": cmd_endpoint,
        "_variant": run_variant,
    }  # fmt: skip
    return commands[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
