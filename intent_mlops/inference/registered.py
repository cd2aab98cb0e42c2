"""A registered version, ready to predict: resolve an alias or number, fetch the logged model once,
build the :class:`~.predictor.Predictor` with the settings the version was logged with.

The batch flow and ``serve-model`` use it, so a nightly file and a live request get the same
model, the same out-of-scope rule and the same ``model_version`` label (``<name>/<version>``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from intent_mlops.registry.champion import fetch_model
from intent_mlops.registry.models import CHAMPION, ModelNotFound, aliases, existing_version

if TYPE_CHECKING:
    from intent_mlops.inference.predictor import Predictor


@dataclass(frozen=True)
class ModelRef:
    name: str
    version: str
    alias: str | None  # how it was asked for (None: by number)

    @property
    def label(self) -> str:
        return f"{self.name}/{self.version}"

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def resolve(name: str, alias: str | None = None, version: str | None = None) -> ModelRef:
    """The version behind ``alias`` (default ``champion``) or the given ``version``; a clear error when
    neither exists."""
    if alias and version:
        raise ModelNotFound("give an alias or a version, not both")
    if version:
        return ModelRef(name, existing_version(name, str(version)), None)
    alias = alias or CHAMPION
    found = aliases(name)
    if alias not in found:
        known = ", ".join(f"{a} -> {v}" for a, v in sorted(found.items())) or "no aliases (train a model first)"
        raise ModelNotFound(f"{name} has no alias {alias!r} ({known})")
    return ModelRef(name, found[alias], alias)


def load_predictor(
    ref: ModelRef, cache: Path, use_onnx: bool | None = None, num_threads: int | None = None
) -> Predictor:
    """The version's predictor with its logged settings (the logged model is downloaded once into
    ``cache``); ``use_onnx`` overrides the logged backend choice. For batches: the passing variant
    with the highest throughput runs."""
    import yaml

    from intent_mlops.inference.pyfunc import predictor_from_config

    folder = fetch_model(ref.name, ref.version, cache)
    flavor = (yaml.safe_load((folder / "MLmodel").read_text()).get("flavors") or {}).get("python_function") or {}
    if "artifacts" not in flavor:
        raise ValueError(f"{ref.label} was not logged as this project's pyfunc model; retrain it to predict with it")
    cfg = flavor.get("config") or {}  # the MLmodel key of log_model(model_config=...)
    return predictor_from_config(folder, cfg, ref.label, use_onnx, num_threads, prefer="throughput")
