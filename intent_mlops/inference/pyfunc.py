"""The MLflow pyfunc model of the intent classifier: the :class:`~.predictor.Predictor`, logged as code.

``mlflow models serve -m models:/intent-classifier@champion`` serves it: a request is a DataFrame
with a ``text`` column (``{"dataframe_records": [{"text": "..."}]}`` or ``{"inputs": {"text": [...]}}``),
optional param ``top_k``; each prediction is ``{label, score, top_k, out_of_scope, ood_score,
model_version}``. Client mistakes raise :class:`InvalidRequest`, an ``MlflowException`` with
``INVALID_PARAMETER_VALUE`` (HTTP 400) that is also an
:class:`~intent_mlops.inference.validation.InvalidInput`; any other failure becomes an
``INTERNAL_ERROR`` (HTTP 500) and is logged with its traceback, so server faults never pass for a
client's 400.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INTERNAL_ERROR, INVALID_PARAMETER_VALUE
from mlflow.pyfunc.model import PythonModel

from intent_mlops.inference.validation import InvalidInput

if TYPE_CHECKING:
    from intent_mlops.inference.predictor import Predictor

log = logging.getLogger(__name__)

MODEL_DIR_ARTIFACT = "model_dir"
CODE_FILE = Path(__file__).with_name("pyfunc_model.py")
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # intent_mlops/
USE_ONNX_ENV = "INTENT_MLOPS_USE_ONNX"  # "1"/"0" overrides the logged choice at load time
MODEL_VERSION_ENV = "INTENT_MLOPS_MODEL_VERSION"  # set by `intent-mlops serve-model`: the registry's version


class InvalidRequest(MlflowException, InvalidInput):
    """A bad request: HTTP 400 from MLflow's scoring server, ``InvalidInput`` for Python callers."""

    def __init__(self, message: str) -> None:
        MlflowException.__init__(self, message, error_code=INVALID_PARAMETER_VALUE)


def texts_from(model_input: Any) -> list[str]:
    """The list of texts in a pyfunc input: a DataFrame with a ``text`` column, a list of strings, or
    a ``{"text": [...]}`` mapping."""
    import pandas as pd

    if isinstance(model_input, pd.DataFrame):
        if "text" not in model_input.columns:
            raise InvalidInput(f"missing column 'text' (got columns {list(model_input.columns)[:10]})")
        return list(model_input["text"].tolist())
    if isinstance(model_input, dict):
        if "text" not in model_input:
            raise InvalidInput(f"missing field 'text' (got fields {list(model_input)[:10]})")
        value = model_input["text"]
        if isinstance(value, str):
            return [value]
        if not isinstance(value, list | tuple):
            raise InvalidInput(f"field 'text' must be a string or a list of strings, got {type(value).__name__}")
        return list(value)
    if isinstance(model_input, pd.Series):
        return list(model_input.tolist())
    if isinstance(model_input, list):
        return model_input
    raise InvalidInput(
        f"expected a DataFrame with a 'text' column or a list of strings, got {type(model_input).__name__}"
    )


def predictor_from_config(
    model_dir: Path | str,
    cfg: dict[str, Any],
    model_version: str | None = None,
    use_onnx: bool | None = None,
    num_threads: int | None = None,
    prefer: str = "latency",
) -> Predictor:
    """The :class:`~.predictor.Predictor` a logged version describes (its ``model_config``: backend,
    max_length, request limits); ``model_version`` / ``use_onnx`` / ``num_threads`` override it.
    ``prefer``: which passing variant runs, the lowest-latency one (the pyfunc, i.e. the online
    endpoint) or the highest-throughput one (``throughput``, the batch flow)."""
    from intent_mlops.inference.predictor import Predictor
    from intent_mlops.inference.validation import Limits

    return Predictor.load(
        model_dir,
        use_onnx=bool(cfg.get("use_onnx", False)) if use_onnx is None else use_onnx,
        onnx_variant=cfg.get("onnx_variant"),
        model_version=model_version or cfg.get("model_version"),
        num_threads=num_threads or cfg.get("num_threads"),
        max_length=int(cfg.get("max_length", 128)),
        batch_size=int(cfg.get("batch_size", 64)),
        limits=Limits(int(cfg.get("max_chars", 2000)), int(cfg.get("max_batch", 1024))),
        prefer=prefer,
    )


class IntentClassifierModel(PythonModel):
    """Builds the :class:`~.predictor.Predictor` from the logged model folder; predicts lists of dicts."""

    # MLflow inspects predict() when a subclass is defined and, with no type hints, warns on every
    # import (under its own "once" filter, so a caller cannot silence it). The hints are left out on
    # purpose: the logged signature validates the input; `Any` hints would only warn differently.
    # MLflow's own escape hatch for classes it does not validate by type hints (its ChatModel's):
    _skip_type_hint_validation = True

    def load_context(self, context: Any) -> None:
        cfg = dict(context.model_config or {})
        use_onnx = None
        if os.environ.get(USE_ONNX_ENV) in ("0", "1"):
            use_onnx = os.environ[USE_ONNX_ENV] == "1"
        self.default_top_k = int(cfg.get("top_k", 3))
        self.predictor = predictor_from_config(
            context.artifacts[MODEL_DIR_ARTIFACT], cfg, os.environ.get(MODEL_VERSION_ENV), use_onnx
        )
        log.info("intent classifier %s loaded (%s)", self.predictor.model_version, self.predictor.backend_name)

    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        top_k = (params or {}).get("top_k", self.default_top_k)
        try:
            return self.predictor.predict(texts_from(model_input), top_k=top_k)
        except InvalidRequest:
            raise
        except InvalidInput as exc:
            raise InvalidRequest(str(exc)) from exc
        except Exception as exc:  # a server fault: 500, never a client's 400
            log.exception("prediction failed")
            raise MlflowException(
                f"internal error while predicting: {type(exc).__name__}", error_code=INTERNAL_ERROR
            ) from exc


def default_pip_requirements(onnx: bool) -> list[str]:
    """Pinned to this environment: what the served model needs (no peft, no training extras)."""
    from importlib.metadata import version

    pkgs = ["mlflow", "transformers", "torch", "tokenizers", "safetensors", "numpy", "pandas", "pyyaml"]
    if onnx:
        pkgs.append("onnxruntime")
    return [f"{p}=={version(p)}" for p in pkgs]


def log_pyfunc(
    model_dir: Path | str,
    name: str = "model",
    input_example: list[str] | None = None,
    pip_requirements: list[str] | None = None,
    *,
    model_version: str | None = None,
    registered_model_name: str | None = None,
    use_onnx: bool | None = None,
    top_k: int = 3,
    max_length: int = 128,
    extra_config: dict[str, Any] | None = None,
) -> Any:
    """Log ``model_dir`` (a ``save_pretrained`` folder, with ``ood.json`` and ``onnx/`` when present) as
    a pyfunc model from code to the active run; returns MLflow's ``ModelInfo``.

    The signature (DataFrame column ``text`` -> list of predictions, param ``top_k``) is inferred from
    ``input_example`` run through the real predictor. ``use_onnx=None`` serves the checked ONNX variant
    when the folder has one. ``model_version`` labels predictions (default: a fingerprint of the
    weights; the registered version number is not known before registering). ``pip_requirements``
    defaults to :func:`default_pip_requirements`.
    """
    import pandas as pd
    from mlflow.models import infer_signature

    from intent_mlops.inference.predictor import Predictor, onnx_folder, passing_variants, variant_backend

    model_dir = Path(model_dir)
    folder = onnx_folder(model_dir)
    has_onnx = folder is not None and bool(passing_variants(folder))
    if use_onnx is None:
        use_onnx = has_onnx
    example = list(input_example or ["where is my order", "I forgot my password", "what time do you open"])
    # what the logged model runs where it is loaded like here: online (pyfunc) and in batches (batch flow)
    predictor = Predictor.load(
        model_dir, use_onnx=use_onnx, model_version=model_version, max_length=max_length, prefer="latency"
    )
    batch = passing_variants(folder, "throughput")[:1] if use_onnx and folder is not None else []
    batch_backend = variant_backend(batch[0]) if batch else predictor.backend_name
    model_config = {
        "use_onnx": bool(use_onnx),
        "model_version": predictor.model_version,
        "backend": predictor.backend_name,
        "batch_backend": batch_backend,
        "top_k": top_k,
        "max_length": max_length,
        **(extra_config or {}),
    }
    frame = pd.DataFrame({"text": example})
    signature = infer_signature(frame, predictor.predict(example, top_k=top_k), params={"top_k": top_k})
    return mlflow.pyfunc.log_model(
        name=name,
        python_model=str(CODE_FILE),
        artifacts={MODEL_DIR_ARTIFACT: str(model_dir)},
        code_paths=[str(PACKAGE_DIR)],
        model_config=model_config,
        signature=signature,
        input_example=frame,
        pip_requirements=pip_requirements or default_pip_requirements(bool(use_onnx)),
        registered_model_name=registered_model_name,
    )
