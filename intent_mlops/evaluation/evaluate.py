"""Evaluate a model (in memory or a saved folder) on named (texts, labels) sets."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from intent_mlops.config.params import TrainConfig
from intent_mlops.evaluation.metrics import Report, report
from intent_mlops.inference.predictor import DEFAULT_MAX_LENGTH
from intent_mlops.model.labels import LabelSpace, labels_of
from intent_mlops.model.loading import load_model, logged_settings
from intent_mlops.model.predict import predict
from intent_mlops.model.tokens import tokenize
from intent_mlops.train.runtime import configure_threads, pick_device


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


def predict_labels(model_dir: Path | str, texts: Sequence[str], cfg: TrainConfig) -> tuple[list[str], list[str]]:
    """(predicted data label per text, the model's label set): per-example predictions of one model.

    Each model answers as it does in service: with its own tokenizer (in its folder) and, for a logged
    model, the ``max_length`` it was logged with; ``cfg`` gives the settings of a folder just trained
    with it, and the runtime (threads, device, batch size), which does not change the answers.
    """
    configure_threads(cfg.num_threads)
    device = pick_device(cfg.device)
    tokenizer, model = load_model(str(model_dir))
    model.to(device)
    labels = labels_of(model)
    logged = logged_settings(str(model_dir))
    max_length = cfg.max_length if logged is None else int(logged.get("max_length", DEFAULT_MAX_LENGTH))
    ids = tokenize(texts, tokenizer, max_length)
    pred = predict(model, ids, int(tokenizer.pad_token_id or 0), cfg.eval_batch_size, device)
    return [labels.labels[i] for i in pred], list(labels.labels)
