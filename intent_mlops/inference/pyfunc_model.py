"""MLflow "models from code" entry point: MLflow runs this file to build the served model.

Nothing is pickled: the logged model holds this file, the ``intent_mlops`` package (``code_paths``)
and the model folder (artifact ``model_dir``); see :func:`intent_mlops.inference.pyfunc.log_pyfunc`.
"""

import mlflow

from intent_mlops.inference.pyfunc import IntentClassifierModel

mlflow.models.set_model(IntentClassifierModel())
