"""Fast CPU inference: export a fine-tuned folder to ONNX, fuse, quantise to int8, check against fp32.

``export_variants(model_dir, dev_texts, dev_labels)`` writes, inside the model folder::

    onnx/model.onnx        fp32, onnxruntime transformer fusions (Attention, SkipLayerNormalization, ...)
    onnx/model.int8.onnx   the same, dynamic int8 quantisation of the MatMul weights
    onnx/variants.json     fused-operator counts and each variant's check against fp32 torch, the
                           bf16 one included (the torch model cast to bfloat16 at load time, no file;
                           checked only on a CPU with bf16 units)

The export runs the classifier with eager attention (``torch.onnx.export(..., dynamo=False)``, dynamic
batch and sequence axes), because onnxruntime's BERT attention fusion matches the eager pattern, not
SDPA. The graph has three outputs: ``logits`` and two pooled embeddings of the last layer, ``cls`` and
``mean`` (for the Mahalanobis out-of-scope score). A variant is marked ``passed`` when its top intent
and (calibrated models) its out-of-scope decision each agree with fp32 torch on at least
``min_agreement`` of the check texts and, with labels, its accuracy is at most ``max_accuracy_drop``
below fp32's; the Predictor only picks passing variants by default.
"""

from __future__ import annotations

import json
import logging
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from intent_mlops.inference.cpu import INT8_WEIGHT_TYPES, bf16_matmul, int8_weight_type
from intent_mlops.inference.predictor import (
    ONNX_DIR,
    ONNX_FP32,
    ONNX_INT8,
    ONNX_REPORT,
    ONNX_VARIANTS,
    TORCH_BF16,
    Predictor,
)

log = logging.getLogger(__name__)

OPSET = 17
# fusions the BERT optimiser must find, or the export is refused (at least one of each group)
REQUIRED_FUSIONS = (("Attention", "MultiHeadAttention"), ("SkipLayerNormalization",))


class ExportError(RuntimeError):
    """The export or its graph optimisation did not give the expected model."""


class _WithPooling:
    """torch module factory: the classifier returning (logits, cls, mean) of the last hidden layer."""

    @staticmethod
    def wrap(model: Any) -> Any:
        import torch

        class Wrapped(torch.nn.Module):
            def __init__(self, inner: Any) -> None:
                super().__init__()
                self.inner = inner

            def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
                out = self.inner(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
                h = out.hidden_states[-1]
                m = attention_mask.unsqueeze(-1).to(h.dtype)
                mean = (h * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)
                return out.logits, h[:, 0], mean

        return Wrapped(model).eval()


def export_onnx(model_dir: Path | str, path: Path | str, opset: int = OPSET) -> Path:
    """Plain (unfused) fp32 ONNX export of the classifier in ``model_dir`` with eager attention."""
    import torch

    from intent_mlops.model.loading import load_model

    tokenizer, model = load_model(str(model_dir))
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation("eager")
    else:  # older transformers
        model.config._attn_implementation = "eager"
    wrapped = _WithPooling.wrap(model.eval())
    enc = tokenizer(["where is my order", "I forgot my password and cannot log in"], padding=True, return_tensors="pt")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}}
    axes.update({name: {0: "batch"} for name in ("logits", "cls", "mean")})
    # the tracer's warnings are about shapes the dynamic axes cover; they would fill a training run's console
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", UserWarning)
        torch.onnx.export(
            wrapped,
            (enc["input_ids"], enc["attention_mask"]),
            str(path),
            input_names=["input_ids", "attention_mask"],
            output_names=["logits", "cls", "mean"],
            dynamic_axes=axes,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    return path


def optimize(raw: Path | str, out: Path | str, num_heads: int, hidden_size: int) -> dict[str, int]:
    """onnxruntime's BERT fusions (Python fusion logic, CPU); returns the fused-operator counts.

    Raises :class:`ExportError` when the attention or skip-layer-norm fusion found nothing (an
    export that silently stays unfused would be several times slower)."""
    from onnxruntime.transformers.optimizer import optimize_model

    opt = optimize_model(str(raw), model_type="bert", num_heads=num_heads, hidden_size=hidden_size, opt_level=0)
    stats = {k: int(v) for k, v in opt.get_fused_operator_statistics().items() if v}
    missing = [group for group in REQUIRED_FUSIONS if not any(stats.get(op, 0) > 0 for op in group)]
    if missing:
        raise ExportError(f"onnxruntime found no {' / '.join(missing[0])} fusion (fused: {stats})")
    opt.save_model_to_file(str(out))
    return stats


def quantize(fp32: Path | str, int8: Path | str, weights: str = "u8") -> Path:
    """Dynamic 8-bit quantisation of the MatMul / Attention weights, per output channel, activations
    quantised per batch at run time.

    ``weights``: ``s8`` (signed, u8s8 kernels) or ``u8`` (unsigned, u8u8 kernels); see
    :mod:`intent_mlops.inference.cpu`. Signed weights ran 2.2x faster on the CI machine, which has
    VNNI and AMX (1,468 against 666 utterances/s on BANKING77 rows, 2 cores), with the same
    agreement with fp32 (96.9 % on a 3-epoch model's test rows); without VNNI onnxruntime's u8s8
    kernels can saturate, so ``auto`` picks unsigned weights there. Activation scales are computed
    per batch, so an utterance's int8 logits depend slightly on the other utterances in its batch.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if weights not in INT8_WEIGHT_TYPES:
        raise ValueError(f"int8 weights: expected one of {INT8_WEIGHT_TYPES}, got {weights!r}")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # onnxruntime advises shape pre-processing via the root logger on every call
    try:
        quantize_dynamic(
            str(fp32),
            str(int8),
            weight_type=QuantType.QInt8 if weights == "s8" else QuantType.QUInt8,
            per_channel=True,
            # fused com.microsoft ops defeat ONNX shape inference: their outputs are fp32
            extra_options={"MatMulConstBOnly": True, "DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    finally:
        root.setLevel(level)
    return Path(int8)


@dataclass
class VariantCheck:
    """One ONNX variant against fp32 torch on the same texts."""

    variant: str
    rows: int
    agreement: float  # same top intent as fp32 torch
    ood_agreement: float | None  # same out-of-scope decision (calibrated models)
    max_prob_diff: float  # largest absolute difference of the top probability
    accuracy_reference: float | None
    accuracy: float | None
    accuracy_delta: float | None  # variant - reference (negative: a loss)
    passed: bool
    file: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_variant(
    reference: Predictor,
    variant: Predictor,
    texts: Sequence[str],
    labels: Sequence[str] | None = None,
    *,
    name: str = "",
    min_agreement: float = 0.99,
    max_accuracy_drop: float = 0.005,
) -> VariantCheck:
    """Compare ``variant``'s predictions with ``reference`` (fp32 torch) on ``texts``.

    Agreement is on the top intent (before the out-of-scope rule), so it measures the numerics;
    ``ood_agreement`` compares the final out-of-scope decisions (calibrated models) and must reach
    ``min_agreement`` too. With ``labels`` (data labels) the accuracy delta is checked too (``oos``
    rows count as right when answered ``out_of_scope``).
    """
    from intent_mlops.model.labels import OOS_DATA, OOS_PREDICTED

    texts = list(texts)
    ref = _columns(reference, texts)
    var = _columns(variant, texts)
    agreement = float((ref["top_labels"][:, 0] == var["top_labels"][:, 0]).mean())
    calibrated = reference.calibration is not None
    ood_agreement = float((ref["out_of_scope"] == var["out_of_scope"]).mean()) if calibrated else None
    acc_ref = acc = delta = None
    if labels is not None:
        truth = np.asarray([OOS_PREDICTED if y == OOS_DATA else y for y in labels], dtype=object)
        acc_ref = float((ref["label"] == truth).mean())
        acc = float((var["label"] == truth).mean())
        delta = acc - acc_ref
    # the out-of-scope threshold was fitted on fp32 scores: a variant whose scores cross it on more rows
    # than the tolerance allows changes answers as surely as one that changes the top intent
    passed = (
        agreement >= min_agreement
        and (ood_agreement is None or ood_agreement >= min_agreement)
        and (delta is None or delta >= -max_accuracy_drop)
    )
    return VariantCheck(
        variant=name or variant.backend_name,
        rows=len(texts),
        agreement=agreement,
        ood_agreement=ood_agreement,
        max_prob_diff=float(np.abs(ref["score"] - var["score"]).max()) if texts else 0.0,
        accuracy_reference=acc_ref,
        accuracy=acc,
        accuracy_delta=delta,
        passed=passed,
    )


def _columns(p: Predictor, texts: list[str]) -> dict[str, Any]:
    """Predictions of every text, in slices the predictor's batch limit accepts."""
    parts = [
        p.predict_columns(texts[i : i + p.limits.max_batch], top_k=1) for i in range(0, len(texts), p.limits.max_batch)
    ]
    return {k: np.concatenate([part[k] for part in parts]) for k in parts[0]}


def export_variants(
    model_dir: Path | str,
    check_texts: Sequence[str],
    check_labels: Sequence[str] | None = None,
    *,
    variants: Sequence[str] = ("fp32", "int8", TORCH_BF16),
    min_agreement: float = 0.99,
    max_accuracy_drop: float = 0.005,
    num_threads: int | None = None,
    max_length: int = 128,
    int8_weights: str = "auto",
) -> dict[str, Any]:
    """Export, fuse and quantise ``model_dir`` into ``model_dir/onnx/``, check each variant against
    fp32 torch on ``check_texts`` (dev), and write ``onnx/variants.json``; returns that report.

    ``int8_weights`` (``auto``, ``s8``, ``u8``): see :func:`quantize`; the report records the choice,
    and a Predictor on a CPU without VNNI does not pick a signed-weight variant.

    A variant that fails its check stays on disk for inspection but is not ``passed``, so
    ``Predictor.load(model_dir, use_onnx=True)`` does not pick it.
    """
    from transformers import AutoConfig

    from intent_mlops.model.loading import model_folders

    model_dir = Path(model_dir)
    weights, _ = model_folders(str(model_dir))
    cfg = AutoConfig.from_pretrained(weights)
    out = model_dir / ONNX_DIR
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        raw = export_onnx(model_dir, Path(tmp) / "raw.onnx")
        fused = optimize(raw, out / ONNX_FP32, cfg.num_attention_heads, cfg.hidden_size)
    weight_type = int8_weight_type(int8_weights)
    if "int8" in variants:
        quantize(out / ONNX_FP32, out / ONNX_INT8, weight_type)
    reference = Predictor.load(model_dir, num_threads=num_threads, max_length=max_length)
    report: dict[str, Any] = {
        "fused_operators": fused,
        "tolerance": {"min_agreement": min_agreement, "max_accuracy_drop": max_accuracy_drop},
        "variants": {},
    }
    for name in variants:
        if name == TORCH_BF16 and not bf16_matmul():
            log.info("no bf16 units on this CPU: the bf16 variant is not checked")
            continue
        v = Predictor.load(model_dir, use_onnx=True, onnx_variant=name, num_threads=num_threads, max_length=max_length)
        check = check_variant(
            reference, v, check_texts, check_labels, name=name,
            min_agreement=min_agreement, max_accuracy_drop=max_accuracy_drop,
        )  # fmt: skip
        check.file = ONNX_VARIANTS.get(name, "")
        size = (out / check.file).stat().st_size if check.file else 0
        report["variants"][name] = {**check.to_dict(), "bytes": size, "backend": v.backend_name}
        if name == "int8":
            report["variants"][name]["weights"] = weight_type
    tmp_report = out / (ONNX_REPORT + ".tmp")
    tmp_report.write_text(json.dumps(report, indent=2))
    tmp_report.replace(out / ONNX_REPORT)
    return report


def export_checked_variants(
    model_dir: Path | str,
    check_texts: Sequence[str],
    check_labels: Sequence[str] | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """:func:`export_variants`, then delete the variants that failed their check, so the folder that
    is logged with a model version holds only what may serve (the report keeps their numbers).

    A model with no ONNX to serve is not an error: the version serves fp32 torch.
    """
    report = export_variants(model_dir, check_texts, check_labels, **kwargs)
    out = Path(model_dir) / ONNX_DIR
    for v in report["variants"].values():
        if not v["passed"] and v["file"]:
            (out / v["file"]).unlink(missing_ok=True)
    return report
