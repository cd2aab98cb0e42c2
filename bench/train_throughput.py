"""Training throughput, side by side in one run, on the same BANKING77 examples and the same model.

  (a) the seed recipe: pad every utterance to 128 tokens, batch 16, plain AdamW loop
  (b) Hugging Face Trainer with length-grouped sampling (what users would pick)
  (c) this project's trainer (intent_mlops.train.loop.train) with its default params

Each variant runs in its own subprocess (so peak RSS is its own); timings cover the training loop
only (no model load, tokenisation or evaluation). FLOPs count the useful (non-padding) tokens:
per layer and sequence of length s, forward = 24*s*h^2 + 4*s^2*h, backward = 2x forward for each
layer that is trained (c freezes the bottom ``train.freeze_layers``, so it does fewer FLOPs per
example; GFLOP/s and % of ceiling count only the FLOPs each variant really performs). The matmul
ceiling is measured here too (fp32 on CPU, bf16 on CUDA), so the % column is hardware-relative.

    python bench/train_throughput.py [--examples 2048] [--epochs 1] [--variants a,b,c] [--repeat 1]
                                     [--set train.KEY=VALUE ...]

The machines are noisy: ``--repeat 2`` runs the variants in interleaved rounds and keeps each one's
fastest round, so a slow spell hurts every variant alike.

``--set`` overrides params.yaml for (c) only, e.g. to measure an option side by side. ``--epochs``
trains every variant that many epochs over the same rows: on a GPU the first epoch is mostly
one-time cost (lazy kernel loading, a first step per new shape), so steady state needs a few.

Data: BANKING77 (Casanueva et al., 2020, CC BY 4.0) from ../shared/datasets.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "datasets" / "banking77" / "train.csv"
NAMES = {
    "a": "seed recipe (pad 128, bs 16, plain AdamW)",
    "b": "HF Trainer (group_by_length, bs 32)",
    "c": "intent-mlops trainer (defaults)",
}


def _examples(n: int) -> tuple[list[str], list[str]]:
    from intent_mlops.data.io import read_csv
    from intent_mlops.train.fit import texts_labels

    return texts_labels(read_csv(DATA).sample(frac=1.0, random_state=0).head(n))  # category read as label


def _device() -> Any:
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def matmul_ceiling() -> float:
    """Best GFLOP/s of square matmuls (fp32 on CPU, bf16 on CUDA)."""
    import torch

    from intent_mlops.train.runtime import configure_threads

    configure_threads(0)
    dev = _device()
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    best = 0.0
    for n in (1024, 2048) if dev.type == "cpu" else (4096, 8192):
        a, b = torch.randn(n, n, device=dev, dtype=dtype), torch.randn(n, n, device=dev, dtype=dtype)
        for _ in range(2):
            a @ b
        reps = 5 if dev.type == "cpu" else 50
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        if dev.type == "cuda":
            torch.cuda.synchronize()
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - t) / 1e9)
    return best


def train_flops(lengths: list[int], hidden: int, layers: int, frozen: int = 0) -> float:
    """FLOPs a training pass really performs: forward through every layer, backward (2x forward)
    through the trained ones. Below a frozen block the lowest trained layer skips the input
    gradient of its Q/K/V projections (6*s*h^2)."""
    total = 0.0
    for s in lengths:
        fwd = 24 * s * hidden**2 + 4 * s * s * hidden
        total += layers * fwd + 2 * (layers - frozen) * fwd - (6 * s * hidden**2 if frozen else 0)
    return total


# --------------------------------------------------------------------------- variants (subprocess)
def run_a(texts: list[str], labels: list[str], epochs: int) -> dict[str, Any]:
    import torch
    from transformers import get_linear_schedule_with_warmup

    from intent_mlops.model.labels import LabelSpace
    from intent_mlops.model.loading import load_model
    from intent_mlops.train.runtime import configure_threads

    configure_threads(0)
    dev = _device()
    space = LabelSpace.from_labels(labels)
    tok, model = load_model("packaged:all-MiniLM-L6-v2", space)
    model.to(dev).train()
    enc = tok(texts, padding="max_length", truncation=True, max_length=128, return_tensors="pt")
    y = torch.tensor(space.encode(labels))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, foreach=False)
    steps = math.ceil(len(texts) / 16) * epochs
    sched = get_linear_schedule_with_warmup(opt, int(0.06 * steps), steps)
    gen = torch.Generator().manual_seed(0)
    t = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(len(texts), generator=gen)
        for i in range(0, len(texts), 16):
            idx = order[i : i + 16]
            out = model(input_ids=enc["input_ids"][idx].to(dev), attention_mask=enc["attention_mask"][idx].to(dev),
                        labels=y[idx].to(dev))  # fmt: skip
            out.loss.backward()
            opt.step()
            sched.step()
            opt.zero_grad()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return {"seconds": time.perf_counter() - t, "padded_tokens": int(enc["input_ids"].numel())}


def run_b(texts: list[str], labels: list[str], epochs: int) -> dict[str, Any]:
    import torch
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    from intent_mlops.model.labels import LabelSpace
    from intent_mlops.model.loading import load_model
    from intent_mlops.train.runtime import configure_threads

    configure_threads(0)
    space = LabelSpace.from_labels(labels)
    tok, model = load_model("packaged:all-MiniLM-L6-v2", space)
    ids = tok(texts, truncation=True, max_length=128)["input_ids"]
    y = space.encode(labels)
    data = [{"input_ids": ids[i], "attention_mask": [1] * len(ids[i]), "labels": y[i]} for i in range(len(ids))]
    cuda = torch.cuda.is_available()
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp, per_device_train_batch_size=32, num_train_epochs=epochs, learning_rate=1e-4,
            warmup_steps=0.06, weight_decay=0.01, train_sampling_strategy="group_by_length",
            save_strategy="no", eval_strategy="no", logging_strategy="no", report_to=[], disable_tqdm=True,
            use_cpu=not cuda, bf16=cuda, dataloader_num_workers=0, seed=0,
        )  # fmt: skip
        trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=DataCollatorWithPadding(tok))
        t = time.perf_counter()
        trainer.train()
        if cuda:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t
    return {"seconds": seconds, "optimizer": type(trainer.optimizer.optimizer).__name__}


def run_c(texts: list[str], labels: list[str], epochs: int, overrides: list[str]) -> dict[str, Any]:
    from intent_mlops.config.params import load_config, parse_overrides
    from intent_mlops.train.loop import train

    fixed = [f"train.epochs={epochs}", f"train.early_stopping_patience={epochs}", "train.progress=false",
             "train.checkpoint_every_steps=0"]  # fmt: skip
    cfg = load_config(REPO / "params.yaml", parse_overrides(overrides + fixed))
    with tempfile.TemporaryDirectory() as tmp:
        result = train(cfg.train, texts, labels, texts[:64], labels[:64], Path(tmp) / "run")
    return {"seconds": result.train_seconds, "frozen_layers": cfg.train.freeze_layers}


def worker(variant: str, n: int, epochs: int, out: Path, overrides: list[str]) -> None:
    texts, labels = _examples(n)
    if variant == "c":
        info = run_c(texts, labels, epochs, overrides)
    else:
        info = {"a": run_a, "b": run_b}[variant](texts, labels, epochs)
    info["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out.write_text(json.dumps(info))


# --------------------------------------------------------------------------- driver
def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--examples", type=int, default=2048)
    p.add_argument("--epochs", type=int, default=1, help="epochs each variant trains over the rows")
    p.add_argument("--variants", default="a,b,c")
    p.add_argument("--repeat", type=int, default=1,
                   help="rounds of a,b,c (interleaved); each variant reports its fastest round")  # fmt: skip
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="params.yaml override for (c)")  # fmt: skip
    args = p.parse_args()
    from intent_mlops.config.environment import apply_defaults

    apply_defaults(REPO)
    if args.worker:
        worker(args.worker, args.examples, args.epochs, args.out, args.overrides)
        return 0
    if not DATA.exists():
        print(f"{DATA} not found (../shared/datasets beside the clone)", file=sys.stderr)
        return 2

    from intent_mlops.model.loading import load_model

    texts, labels = _examples(args.examples)
    tok, model = load_model("packaged:all-MiniLM-L6-v2")
    lengths = [len(x) for x in tok(texts, truncation=True, max_length=128)["input_ids"]]
    hidden, layers = model.config.hidden_size, model.config.num_hidden_layers
    del model
    dev = _device()
    rows: dict[str, dict[str, Any]] = {}
    ceiling = 0.0
    for rep in range(args.repeat):
        ceiling = max(ceiling, matmul_ceiling())  # per round too: a slow spell must not lower the bar
        for v in args.variants.split(","):
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "r.json"
                cmd = [sys.executable, __file__, "--worker", v, "--examples", str(args.examples), "--out", str(out),
                       "--epochs", str(args.epochs)]  # fmt: skip
                cmd += [f"--set={o}" for o in args.overrides]
                subprocess.run(cmd, check=True, env={**os.environ, "TQDM_DISABLE": "1"})
                r = json.loads(out.read_text())
            print(f"  round {rep + 1}, {v}: {len(texts) * args.epochs / r['seconds']:.1f} examples/s", flush=True)
            if v not in rows or r["seconds"] < rows[v]["seconds"]:
                rows[v] = r
    for r in rows.values():
        s = r["seconds"]
        flops = train_flops(lengths, hidden, layers, r.get("frozen_layers", 0)) * args.epochs
        r.update(
            gflop_per_example=flops / len(texts) / args.epochs / 1e9,
            examples_per_s=len(texts) * args.epochs / s,
            useful_tokens_per_s=sum(lengths) * args.epochs / s,
            gflops=flops / s / 1e9,
        )
        r["pct_ceiling"] = 100 * r["gflops"] / ceiling

    unit = "TFLOP/s" if dev.type == "cuda" else "GFLOP/s"
    scale = 1e-3 if dev.type == "cuda" else 1.0
    print()
    mean_len = sum(lengths) / len(lengths)
    print(f"device: {dev.type}, threads: {os.cpu_count()}, examples: {len(texts)} BANKING77 rows x {args.epochs} "
          f"epoch(s), mean {mean_len:.1f} tokens")  # fmt: skip
    dtype = "bf16" if dev.type == "cuda" else "fp32"
    print(f"measured matmul ceiling ({dtype}): {ceiling * scale:.1f} {unit}")
    print()
    print(f"| variant | examples/s | useful tokens/s | GFLOP/example | {unit} | % of ceiling | peak RSS MB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for v, r in rows.items():
        print(f"| ({v}) {NAMES[v]} | {r['examples_per_s']:.1f} | {r['useful_tokens_per_s']:.0f} | "
              f"{r['gflop_per_example']:.2f} | "
              f"{r['gflops'] * scale:.1f} | {r['pct_ceiling']:.1f} | {r['peak_rss_mb']:.0f} |")  # fmt: skip
    print()
    for num, den in (("c", "a"), ("c", "b"), ("b", "a")):
        if num in rows and den in rows:
            print(f"{num}/{den} = {rows[num]['examples_per_s'] / rows[den]['examples_per_s']:.2f}")
    if args.json:
        result = {"ceiling": ceiling, "device": dev.type, "epochs": args.epochs, "rows": rows}
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
