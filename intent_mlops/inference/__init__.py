"""Using a trained model: one prediction path (:mod:`.predictor`), calibrated out-of-scope rejection
(:mod:`.ood`, :mod:`.calibrate`), ONNX export and int8 quantisation (:mod:`.onnx_export`), the MLflow
pyfunc wrapper (:mod:`.pyfunc`) and streamed batch prediction (:mod:`.batch`).

Submodules are imported on use: :mod:`.validation` and :mod:`.ood` need neither torch nor transformers,
so a server can import :class:`~intent_mlops.inference.validation.InvalidInput` cheaply.
"""

from intent_mlops.inference.validation import InvalidInput

__all__ = ["InvalidInput"]
