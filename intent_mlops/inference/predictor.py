"""The one prediction path: texts -> top-k intents, probabilities, out-of-scope decision, model version.

Every consumer (the MLflow pyfunc model, batch prediction, the benchmark, a server) goes through
:class:`Predictor`: input validation (:class:`~intent_mlops.inference.validation.InvalidInput` for client
mistakes), tokenisation without padding, length-sorted dynamic batches, one forward pass per batch on
torch (fp32, or bf16 on CPUs with bf16 units) or onnxruntime (an exported fp32 or int8 variant), the
variant checked at export and fastest for the use (batches or single requests), temperature-scaled
probabilities and the
calibrated out-of-scope rule stored with the model (``ood.json``).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from intent_mlops.inference.cpu import bf16_matmul, int8_dot_product
from intent_mlops.inference.ood import CALIBRATION_JSON, OodCalibration, max_softmax, pool, softmax
from intent_mlops.inference.validation import Limits, validate_texts, validate_top_k
from intent_mlops.model.labels import OOS_PREDICTED

log = logging.getLogger(__name__)

ONNX_DIR = "onnx"
ONNX_FP32, ONNX_INT8 = "model.onnx", "model.int8.onnx"
ONNX_VARIANTS = {"fp32": ONNX_FP32, "int8": ONNX_INT8}
# bf16 is not a file: the torch model cast to bfloat16 at load time, checked like the ONNX variants
TORCH_BF16 = "bf16"
# Fastest first among the passing variants, measured on 2 cores (docs/benchmarks.md): in batches, bf16 torch
# (1,199 utterances/s) beats ONNX fp32 (588); for one utterance per call ONNX fp32 (2.7 ms) beats it (6.7 ms).
ORDER = {"throughput": ("int8", TORCH_BF16, "fp32"), "latency": ("int8", "fp32", TORCH_BF16)}
ONNX_REPORT = "variants.json"
DEFAULT_MAX_LENGTH = 128
DEFAULT_BATCH_SIZE = 64


@dataclass
class Outputs:
    """Per-row arrays of one forward pass, in input order."""

    logits: np.ndarray  # rows x classes (float32)
    embeddings: np.ndarray | None  # rows x hidden, pooled as the calibration asks (None when not needed)


class Backend(Protocol):
    name: str

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray, pooling: str | None) -> Outputs: ...


class TorchBackend:
    """torch forward pass on CPU (or a given device), in fp32 or, with ``dtype="bf16"``, with the
    weights cast to bfloat16: on the CI machine's AMX units that ran 1.9x fp32 torch on BANKING77 test
    rows (1,199 against 622 utterances/s) with 99.85 % top-intent agreement on dev
    (docs/benchmarks.md); without bf16 units it is slower than fp32, so it is only picked where
    :func:`~intent_mlops.inference.cpu.bf16_matmul` says so."""

    def __init__(self, model: Any, device: str = "cpu", dtype: str = "fp32") -> None:
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        if dtype == TORCH_BF16:
            self.model = self.model.to(torch.bfloat16)
        self.name = f"torch-{dtype}"

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray, pooling: str | None) -> Outputs:
        torch = self.torch
        with torch.inference_mode():
            out = self.model(
                input_ids=torch.from_numpy(input_ids).to(self.device),
                attention_mask=torch.from_numpy(attention_mask).to(self.device),
                output_hidden_states=pooling is not None,
            )
            logits = out.logits.float().cpu().numpy()
            emb = None
            if pooling is not None:
                emb = pool(out.hidden_states[-1].float().cpu().numpy(), attention_mask, pooling)
        return Outputs(logits, emb)


class OnnxBackend:
    """onnxruntime session over an exported variant (outputs ``logits``, ``cls``, ``mean``)."""

    def __init__(self, path: Path | str, num_threads: int | None = None, name: str = "onnx") -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if num_threads:
            opts.intra_op_num_threads = num_threads
            opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.name = name
        self.path = Path(path)

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray, pooling: str | None) -> Outputs:
        wanted = ["logits"] + ([pooling] if pooling else [])
        res = self.session.run(wanted, {"input_ids": input_ids, "attention_mask": attention_mask})
        return Outputs(np.asarray(res[0], dtype=np.float32), res[1] if pooling else None)


def onnx_folder(model_dir: Path | str) -> Path | None:
    """The ``onnx/`` folder of a model folder (or of the ``model/`` folder inside a logged MLflow model)."""
    root = Path(model_dir)
    for candidate in (root / ONNX_DIR, root / "model" / ONNX_DIR):
        if candidate.is_dir():
            return candidate
    return None


def passing_variants(folder: Path, prefer: str = "throughput") -> list[str]:
    """Variants whose check against fp32 torch passed (``variants.json``) and that this CPU runs
    well, fastest first for ``prefer`` (``throughput``: batches; ``latency``: one request at a time)."""
    report = folder / ONNX_REPORT
    if not report.exists():
        return []
    raw = json.loads(report.read_text())
    ok = [
        name
        for name, r in raw.get("variants", {}).items()
        if r.get("passed") and (name == TORCH_BF16 or (bool(r.get("file")) and (folder / r["file"]).is_file()))
    ]
    if TORCH_BF16 in ok and not bf16_matmul():
        log.info("%s: the bf16 variant passed its check, but this CPU has no bf16 units: not used", folder)
        ok.remove(TORCH_BF16)
    int8 = raw.get("variants", {}).get("int8", {})
    if "int8" in ok and int8.get("weights") == "s8" and not int8_dot_product():
        log.warning(
            "%s: the int8 variant has signed weights, checked on a CPU with VNNI; this CPU has none, so its "
            "int8 sums could saturate: serving the next variant instead",
            folder,
        )
        ok.remove("int8")
    order = list(ORDER[prefer])
    if prefer == "throughput" and int8.get("weights", "u8") != "s8":  # unsigned int8 runs at about fp32 speed
        order.remove(TORCH_BF16)
        order.insert(0, TORCH_BF16)
    return sorted(ok, key=lambda n: order.index(n) if n in order else len(order))


def variant_backend(variant: str) -> str:
    """The ``backend_name`` a Predictor running ``variant`` reports."""
    return f"torch-{variant}" if variant == TORCH_BF16 else f"onnx-{variant}"


def weights_fingerprint(folder: Path | str) -> str:
    """``sha256:<12 hex>`` of the model weights: a version label that follows the content."""
    folder = Path(folder)
    files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob(f"{ONNX_DIR}/*.onnx"))
    files = [f for f in files if f.name != "ood.safetensors"]
    h = hashlib.sha256()
    for f in files:
        with f.open("rb") as fh:
            while block := fh.read(1 << 20):
                h.update(block)
    return "sha256:" + h.hexdigest()[:12]


def _calibration(*folders: Path) -> OodCalibration | None:
    """The stored out-of-scope calibration of a model folder (the first folder holding one)."""
    for folder in folders:
        if (folder / CALIBRATION_JSON).exists():
            return OodCalibration.load(folder)
    return None


def _fast_variant(
    root: Path, weights: Path, variant: str | None, num_threads: int | None, prefer: str = "throughput"
) -> OnnxBackend | str:
    """The variant asked for (missing: an error), else the fastest one whose check passed: an
    :class:`OnnxBackend`, or ``"bf16"`` / ``"fp32"`` for the torch model (fp32 with a warning when
    nothing passed)."""
    onnx_dir = onnx_folder(root) or onnx_folder(weights)
    chosen = variant
    if onnx_dir is not None and chosen is None:
        ok = passing_variants(onnx_dir, prefer)
        chosen = ok[0] if ok else None
    if chosen == TORCH_BF16:
        return TORCH_BF16
    path = onnx_dir / ONNX_VARIANTS.get(chosen or "", "?") if onnx_dir is not None else None
    if path is not None and path.exists():
        return OnnxBackend(path, num_threads, name=variant_backend(str(chosen)))
    if variant is not None:
        raise FileNotFoundError(f"{root}: no ONNX variant {variant!r} under {ONNX_DIR}/")
    log.warning("%s: no checked fast variant under %s/; using torch fp32", root, ONNX_DIR)
    return "fp32"


class Predictor:
    """Texts -> predictions. Build it with :meth:`load`; call :meth:`predict`."""

    def __init__(
        self,
        tokenizer: Any,
        backend: Backend,
        id2label: Sequence[str],
        calibration: OodCalibration | None = None,
        model_version: str = "unversioned",
        *,
        max_length: int = DEFAULT_MAX_LENGTH,
        batch_size: int = DEFAULT_BATCH_SIZE,
        limits: Limits | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.backend = backend
        self.labels = list(id2label)  # predicted names: the model's oos class is already ``out_of_scope``
        self.calibration = calibration
        self.model_version = model_version
        self.max_length = max_length
        self.batch_size = batch_size
        self.limits = limits or Limits()
        self.pad_id = int(tokenizer.pad_token_id or 0)
        self.oos_index = self.labels.index(OOS_PREDICTED) if OOS_PREDICTED in self.labels else None

    # ------------------------------------------------------------ construction

    @classmethod
    def load(
        cls,
        model_dir: Path | str,
        *,
        use_onnx: bool = False,
        onnx_variant: str | None = None,
        model_version: str | None = None,
        num_threads: int | None = None,
        max_length: int = DEFAULT_MAX_LENGTH,
        batch_size: int = DEFAULT_BATCH_SIZE,
        limits: Limits | None = None,
        calibration: bool = True,
        prefer: str = "throughput",
    ) -> Predictor:
        """A predictor over a ``save_pretrained`` folder or a logged MLflow model folder (this project's
        pyfunc, or the transformers flavour).

        ``ood.json`` in the folder (see :mod:`.calibrate`) turns on out-of-scope rejection
        (``calibration=False`` ignores it). ``use_onnx=True`` runs a faster variant checked at export
        time (``onnx/variants.json``): ``onnx_variant`` ("int8", "fp32" or "bf16", the torch model in
        bfloat16), or by default the fastest one whose check passed and that this CPU runs well, for
        ``prefer`` (:data:`ORDER`: ``throughput`` for batches, ``latency`` for an online endpoint); with
        none it falls back to torch fp32 and logs a warning. With ONNX the
        torch weights are never loaded. ``model_version`` labels every prediction (default: a
        fingerprint of the weights).
        """
        from intent_mlops.model.loading import model_folders, resolve_model_path

        if prefer not in ORDER:
            raise ValueError(f"prefer: expected one of {sorted(ORDER)}, got {prefer!r}")
        root = Path(resolve_model_path(str(model_dir)))
        weights, tok_dir = (Path(p) for p in model_folders(str(root)))
        calib = _calibration(root, weights) if calibration else None
        fast = _fast_variant(root, weights, onnx_variant, num_threads, prefer) if use_onnx else "fp32"
        backend: Backend | None = fast if isinstance(fast, OnnxBackend) else None
        if backend is None:  # torch: fp32 (asked for, or nothing faster passed) or bf16
            from intent_mlops.model.loading import load_model

            if num_threads:
                import torch

                torch.set_num_threads(num_threads)
            tokenizer, model = load_model(str(root))
            backend = TorchBackend(model, dtype=str(fast))
            id2label = [model.config.id2label[i] for i in range(len(model.config.id2label))]
        else:
            from transformers import AutoConfig, AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(str(tok_dir))
            config = AutoConfig.from_pretrained(str(weights))
            id2label = [config.id2label[i] for i in range(len(config.id2label))]
        return cls(
            tokenizer,
            backend,
            id2label,
            calib,
            model_version or weights_fingerprint(weights),
            max_length=max_length,
            batch_size=batch_size,
            limits=limits,
        )

    @property
    def backend_name(self) -> str:
        return self.backend.name

    # ------------------------------------------------------------ forward

    def forward(self, texts: Sequence[str], pooling: str | None = None) -> Outputs:
        """Logits (and pooled embeddings) for already-validated texts, in input order.

        Texts are tokenised once without padding and run in batches of similar length, each padded
        only to its own longest row. ``pooling`` defaults to what the calibration needs.
        """
        if pooling is None and self.calibration is not None and self.calibration.needs_embeddings:
            pooling = self.calibration.pooling
        ids: list[list[int]] = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)["input_ids"]
        order = np.argsort([len(x) for x in ids], kind="stable")
        logits: np.ndarray | None = None
        emb: np.ndarray | None = None
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            width = max(len(ids[i]) for i in idx)
            input_ids = np.full((len(idx), width), self.pad_id, dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for r, i in enumerate(idx):
                input_ids[r, : len(ids[i])] = ids[i]
                mask[r, : len(ids[i])] = 1
            out = self.backend.run(input_ids, mask, pooling)
            if logits is None:
                logits = np.empty((len(ids), out.logits.shape[1]), dtype=np.float32)
            logits[idx] = out.logits
            if out.embeddings is not None:
                if emb is None:
                    emb = np.empty((len(ids), out.embeddings.shape[1]), dtype=np.float32)
                emb[idx] = out.embeddings
        assert logits is not None
        return Outputs(logits, emb)

    def predict_columns(self, texts: Sequence[str], top_k: int = 3) -> dict[str, Any]:
        """Column-wise predictions (arrays), for batch paths; :meth:`predict` formats them per row."""
        texts = validate_texts(texts, self.limits)
        top_k = validate_top_k(top_k, len(self.labels))
        out = self.forward(texts)
        temperature = self.calibration.temperature if self.calibration else 1.0
        probs = softmax(out.logits, temperature)
        top = np.argsort(-probs, axis=1, kind="stable")[:, :top_k]
        top_p = np.take_along_axis(probs, top, axis=1)
        oos = top[:, 0] == self.oos_index if self.oos_index is not None else np.zeros(len(texts), dtype=bool)
        if self.calibration is not None:
            scores = self.calibration.scores(out.logits, out.embeddings)
            oos = oos | self.calibration.rejects(scores)
        else:
            scores = max_softmax(out.logits)
        labels = np.asarray(self.labels, dtype=object)
        label = np.where(oos, OOS_PREDICTED, labels[top[:, 0]])
        return {
            "label": label,
            "score": top_p[:, 0].astype(np.float64),
            "top_labels": labels[top],
            "top_probs": top_p.astype(np.float64),
            "out_of_scope": oos,
            "ood_score": np.asarray(scores, dtype=np.float64),
        }

    def predict(self, texts: list[str], top_k: int = 3) -> list[dict[str, Any]]:
        """One dict per text: ``label`` (an intent, or ``out_of_scope``), ``score`` (the top intent's
        probability, temperature-scaled when calibrated), ``top_k`` ([{label, probability}]),
        ``out_of_scope`` (bool), ``ood_score`` (the calibrated score, higher = more in scope; max
        softmax when the model has no calibration) and ``model_version``.

        Raises :class:`~intent_mlops.inference.validation.InvalidInput` for a bad request.
        """
        cols = self.predict_columns(texts, top_k)
        return [
            {
                "label": str(cols["label"][i]),
                "score": float(cols["score"][i]),
                "top_k": [
                    {"label": str(lab), "probability": float(p)}
                    for lab, p in zip(cols["top_labels"][i], cols["top_probs"][i], strict=True)
                ],
                "out_of_scope": bool(cols["out_of_scope"][i]),
                "ood_score": float(cols["ood_score"][i]),
                "model_version": self.model_version,
            }
            for i in range(len(cols["label"]))
        ]
