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
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from intent_mlops.config.params import TrainConfig
from intent_mlops.evaluation.evaluate import evaluate_ids
from intent_mlops.model.labels import LabelSpace
from intent_mlops.model.loading import load_model
from intent_mlops.model.tokens import collate, tokenize
from intent_mlops.train.averaging import WeightAverage
from intent_mlops.train.batching import length_grouped_batches, split_padding
from intent_mlops.train.checkpoint import BEST, TrainState, load_checkpoint, merge_lora_best, save_best, save_checkpoint
from intent_mlops.train.distributed import Dist, init_distributed
from intent_mlops.train.dropout import use_fast_dropout
from intent_mlops.train.freezing import add_lora, freeze_bottom
from intent_mlops.train.optimizer import make_optimizer
from intent_mlops.train.progress import progress_bar
from intent_mlops.train.runtime import configure_threads, keep_freed_memory, pick_device, set_seed

MetricsLogger = Callable[[dict[str, float], int], None]


# On CPU one more forward + backward pass costs about as much as this many padded token slots
# (fixed per-pass work, smaller matmuls), so a batch is split only where that saves more padding
# (docs/benchmarks.md). On CUDA a pass costs far more than padding: batches stay whole there.
CPU_PASS_COST_TOKENS = 256


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
class _Run:
    """Everything one training run holds between its pieces (set-up, epochs, export)."""

    cfg: TrainConfig
    out: Path
    dist: Dist
    device: torch.device
    labels: LabelSpace
    tokenizer: Any
    model: Any  # the module whose weights are saved
    net: Any  # what runs forward: the model, or its DDP wrapper
    lora: bool
    opt: torch.optim.Optimizer
    sched: Any
    ema: WeightAverage | None
    state: TrainState
    train_rows: list[torch.Tensor]
    lengths: list[int]
    y_train: list[int]
    dev_ids: list[list[int]]
    y_dev: list[int]
    micro_per_epoch: int
    total_steps: int
    log_metrics: MetricsLogger | None

    def checkpoint(self) -> None:
        if self.dist.main:
            save_checkpoint(self.out, self.model, self.opt, self.sched, self.state, self.ema)
        self.dist.barrier()


def _prepare_model(cfg: TrainConfig, labels: LabelSpace, device: torch.device) -> tuple[Any, Any, bool]:
    """Pretrained encoder + new head, with the configured freezing, LoRA and CPU dropout."""
    tokenizer, model = load_model(cfg.model_name_or_path, labels, cfg.dropout, cfg.keep_layers)
    if cfg.freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    lora = cfg.lora_r > 0
    if lora:
        model = add_lora(model, cfg)
    if cfg.freeze_layers:
        freeze_bottom(model, cfg.freeze_layers)
    if device.type == "cpu":
        use_fast_dropout(model)
    return tokenizer, model.to(device), lora


def _set_up(
    cfg: TrainConfig,
    train_texts: Sequence[str],
    train_labels: Sequence[str],
    dev_texts: Sequence[str],
    dev_labels: Sequence[str],
    out: Path,
    cache: Path | None,
    log_metrics: MetricsLogger | None,
) -> _Run:
    """Threads, device, seeds, model, tokens, optimizer and schedule; then resume a checkpoint if any."""
    from transformers import get_linear_schedule_with_warmup

    out.mkdir(parents=True, exist_ok=True)
    configure_threads(cfg.num_threads)
    dist, device = init_distributed(pick_device(cfg.device))
    if device.type == "cpu":
        keep_freed_memory()
    set_seed(cfg.seed)
    labels = LabelSpace.from_labels(list(train_labels))
    unknown = sorted(set(dev_labels) - set(labels.labels))
    if unknown:
        raise ValueError(f"dev labels not in train: {unknown}")
    tokenizer, model, lora = _prepare_model(cfg, labels, device)
    net = model
    if dist.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[dist.local_rank] if device.type == "cuda" else None
        )
    train_ids = tokenize(train_texts, tokenizer, cfg.max_length, cache)
    micro_per_epoch = math.ceil(len(train_ids) / cfg.batch_size) // dist.world
    total_steps = math.ceil(micro_per_epoch / cfg.grad_accum_steps) * cfg.epochs
    opt = make_optimizer(model, cfg, device)
    sched = get_linear_schedule_with_warmup(opt, int(cfg.warmup_ratio * total_steps), total_steps)
    ema = WeightAverage(model, cfg.ema_decay) if cfg.ema_decay > 0 else None
    state = load_checkpoint(out, model, opt, sched, ema) or TrainState()
    return _Run(
        cfg=cfg, out=out, dist=dist, device=device, labels=labels, tokenizer=tokenizer, model=model, net=net,
        lora=lora, opt=opt, sched=sched, ema=ema, state=state,
        train_rows=[torch.tensor(x, dtype=torch.long) for x in train_ids],  # once, not every epoch
        lengths=[len(x) for x in train_ids], y_train=labels.encode(train_labels),
        dev_ids=tokenize(dev_texts, tokenizer, cfg.max_length, cache), y_dev=labels.encode(dev_labels),
        micro_per_epoch=micro_per_epoch, total_steps=total_steps, log_metrics=log_metrics,
    )  # fmt: skip


def _backward(run: _Run, idx: list[int], boundary: bool) -> torch.Tensor:
    """Forward + backward of one batch (cut into micro-batches on CPU); returns its summed loss."""
    cfg, dist, device = run.cfg, run.dist, run.device
    pass_cost = CPU_PASS_COST_TOKENS if device.type == "cpu" else 0
    parts = split_padding([run.lengths[i] for i in idx], pass_cost) if pass_cost else [list(range(len(idx)))]
    pad_id = int(run.tokenizer.pad_token_id or 0)
    total = torch.zeros((), device=device)
    for k, part in enumerate(parts):
        rows = [idx[i] for i in part]
        batch = {
            key: v.to(device, non_blocking=True)
            for key, v in collate([run.train_rows[i] for i in rows], pad_id).items()
        }
        target = torch.tensor([run.y_train[i] for i in rows], device=device)
        # DDP averages gradients once per optimizer step, whatever each rank's number of passes
        sync = dist.world == 1 or (boundary and k + 1 == len(parts))
        with contextlib.nullcontext() if sync else run.net.no_sync():
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                logits = run.net(**batch).logits
            loss = torch.nn.functional.cross_entropy(
                logits.float(), target, label_smoothing=cfg.label_smoothing, reduction="sum"
            ) / (len(idx) * cfg.grad_accum_steps)  # the whole batch's mean, split or not
            loss.backward()
        total += loss.detach() * cfg.grad_accum_steps
    return total


def _optimizer_step(run: _Run, trainable: list[torch.nn.Parameter]) -> None:
    if run.cfg.max_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_(trainable, run.cfg.max_grad_norm, foreach=True)
    run.opt.step()
    run.sched.step()
    run.opt.zero_grad(set_to_none=True)
    run.state.global_step += 1
    if run.ema is not None:
        run.ema.update(run.state.global_step)


def _train_epoch(run: _Run, bar: Any, stop_after_steps: int | None) -> None:
    """The rest of the current epoch from ``state.batch_in_epoch``: steps, curves, periodic checkpoints."""
    cfg, state, dist = run.cfg, run.state, run.dist
    run.net.train()
    trainable = [p for p in run.model.parameters() if p.requires_grad]
    ordered = length_grouped_batches(run.lengths, cfg.batch_size, cfg.seed, state.epoch)
    batches = ordered[dist.rank : run.micro_per_epoch * dist.world : dist.world]
    t0 = time.perf_counter()
    running, seen_in_window = torch.zeros((), device=run.device), 0  # a tensor: no GPU sync per step
    for b in range(state.batch_in_epoch, len(batches)):
        last = b + 1 == len(batches)
        boundary = (b + 1) % cfg.grad_accum_steps == 0 or last  # an optimizer step follows
        running += _backward(run, batches[b], boundary)
        seen_in_window += 1
        state.examples_seen += len(batches[b]) * dist.world
        state.batch_in_epoch = b + 1
        if not boundary:
            continue
        _optimizer_step(run, trainable)
        bar.update(1)
        if state.global_step % 10 == 0 or last:
            avg = running.item() / max(seen_in_window, 1)
            bar.set_postfix(loss=f"{avg:.4f}", epoch=state.epoch, refresh=False)
            if run.log_metrics and dist.main:
                group = run.opt.param_groups[0]
                lr = group["lr"] / group.get("lr_scale", 1.0)  # the base rate, whatever the group
                run.log_metrics({"train_loss": avg, "learning_rate": lr}, state.global_step)
            running, seen_in_window = torch.zeros((), device=run.device), 0
        periodic = cfg.checkpoint_every_steps and state.global_step % cfg.checkpoint_every_steps == 0 and not last
        stop = stop_after_steps is not None and state.global_step >= stop_after_steps
        if periodic or stop:
            state.train_seconds += time.perf_counter() - t0
            t0 = time.perf_counter()
            run.checkpoint()
        if stop:
            bar.close()
            raise TrainingInterrupted(state.global_step)
    if run.device.type == "cuda":
        torch.cuda.synchronize()  # CUDA queues work: count it in this epoch's training time
    state.train_seconds += time.perf_counter() - t0


def _end_epoch(run: _Run, bar: Any) -> None:
    """Dev evaluation, best-model export, early stopping, and the epoch's checkpoint."""
    cfg, state, dist = run.cfg, run.state, run.dist
    averaged = run.ema.applied if run.ema is not None else contextlib.nullcontext
    pad_id = int(run.tokenizer.pad_token_id or 0)
    with averaged():  # dev selection and export both see the averaged weights when there are some
        dev = evaluate_ids(run.model, run.dev_ids, run.y_dev, run.labels, pad_id, cfg.eval_batch_size, run.device)
        gain = dev.macro_f1 > state.best_dev_macro_f1
        if gain and dist.main:
            save_best(run.out, run.model, run.tokenizer, run.lora)
    entry = {"epoch": float(state.epoch + 1), "step": float(state.global_step), **dev.metrics("dev")}
    state.history.append(entry)
    if run.log_metrics and dist.main:
        # the learning curve is `epoch_dev_*`: `dev_*` / `test_*` are the final evaluation of the model
        # that gets registered (the best epoch's weights). One name for both showed MLflow's "latest"
        # value, the last epoch's, on the run page and in the model card.
        curve = {f"epoch_{k}": v for k, v in entry.items() if k.startswith("dev_")}
        run.log_metrics(curve, state.global_step)
    if gain:
        state.best_dev_macro_f1, state.best_epoch, state.epochs_without_gain = dev.macro_f1, state.epoch + 1, 0
    else:
        state.epochs_without_gain += 1
        state.finished = state.epochs_without_gain >= cfg.early_stopping_patience
    if dist.main:
        bar.write(
            f"epoch {state.epoch + 1}: dev accuracy {dev.accuracy:.4f}, dev macro-F1 {dev.macro_f1:.4f}"
            + ("  (best)" if state.best_epoch == state.epoch + 1 else "")
        )
        if state.finished and state.epoch + 1 < cfg.epochs:  # else the bar stopping short looks like a fault
            bar.write(
                f"early stopping: no dev macro-F1 gain for {state.epochs_without_gain} epochs "
                f"(train.early_stopping_patience); the best epoch, {state.best_epoch}, is kept"
            )
    state.epoch += 1
    state.batch_in_epoch = 0
    state.finished = state.finished or state.epoch >= cfg.epochs
    run.checkpoint()


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
    cache = Path(cache_dir) if cache_dir else None
    run = _set_up(cfg, train_texts, train_labels, dev_texts, dev_labels, Path(out_dir), cache, log_metrics)
    state, resumed_from = run.state, run.state.global_step
    bar = progress_bar(total=run.total_steps, initial=state.global_step, desc="train", unit="step",
               disable=not (cfg.progress and run.dist.main))  # fmt: skip
    while not state.finished and state.epoch < cfg.epochs:
        _train_epoch(run, bar, stop_after_steps)
        _end_epoch(run, bar)
    bar.close()
    if run.lora and run.dist.main:
        merge_lora_best(run.out, run.model, run.tokenizer)
    run.dist.barrier()
    return TrainResult(
        model_dir=run.out / BEST,
        best_epoch=state.best_epoch,
        best_dev_macro_f1=state.best_dev_macro_f1,
        global_step=state.global_step,
        resumed_from_step=resumed_from,
        epochs_run=state.epoch,
        train_seconds=state.train_seconds,
        examples_per_second=state.examples_seen / state.train_seconds if state.train_seconds else 0.0,
        history=state.history,
        device=run.device.type,
        world_size=run.dist.world,
    )


class TrainingInterrupted(RuntimeError):
    """Raised by ``stop_after_steps``: a checkpoint was written and a rerun resumes from it."""

    def __init__(self, step: int) -> None:
        super().__init__(f"training stopped at step {step}; a checkpoint was saved")
        self.step = step
