"""``params.md5`` hashes exactly the settings that change the model or its served answers.

It decides whether the retrain flow skips (same data + params as the champion) and which unfinished
run a rerun resumes, so an operational knob (a progress bar, threads, a device, checkpoint spacing)
must leave it as it is, and every model setting must change it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from intent_mlops.config import params
from intent_mlops.config.params import Config, load_config
from intent_mlops.registry import tracking
from tests.conftest import REPO

OPERATIONAL: list[tuple[str, Any]] = [
    ("train.progress", False),
    ("train.num_threads", 3),
    ("train.device", "cpu"),
    ("train.eval_batch_size", 16),
    ("train.checkpoint_every_steps", 7),
    ("train.gradient_checkpointing", True),
    ("data.generate_seed", 5),
    ("data.generate_per_intent", 20),
    ("data.label_noise", 0.1),
    ("data.typo_rate", 0.2),
    ("data.file", "data/other.csv"),
    ("validation.min_rows", 10),
    ("validation.max_examples", 2),
    ("validation.normalise_labels", True),
    ("mlflow.experiment", "other"),
    ("promotion.min_delta", 0.05),
    ("schedule.cron", "0 4 * * *"),
]

MODEL: list[tuple[str, Any]] = [
    ("train.max_length", 32),
    ("train.seed", 7),
    ("train.learning_rate", 1e-4),
    ("train.num_processes", 2),  # the effective batch: batch_size x grad_accum_steps x processes
    ("train.lora_target_modules", ["query"]),
    ("split.seed", 3),
    ("serving.ood_score", "energy"),
    ("serving.top_k", 2),
    ("serving.use_onnx", False),
]


def _with(setting: str, value: Any) -> Config:
    section, key = setting.split(".")
    return load_config(None, {section: {key: value}})


@pytest.mark.parametrize(("setting", "value"), OPERATIONAL, ids=[s for s, _ in OPERATIONAL])
def test_an_operational_knob_leaves_the_hash(setting: str, value: Any) -> None:
    assert _with(setting, value).flat()[setting] != Config().flat()[setting], "the toggle takes effect"
    assert _with(setting, value).md5() == Config().md5()


@pytest.mark.parametrize(("setting", "value"), MODEL, ids=[s for s, _ in MODEL])
def test_a_model_setting_changes_the_hash(setting: str, value: Any) -> None:
    assert _with(setting, value).md5() != Config().md5()


def test_the_hashed_settings_are_listed_in_one_place() -> None:
    hashed = params.hashed_settings()
    assert {s for s, _ in MODEL} <= set(hashed)
    assert not {s for s, _ in OPERATIONAL} & set(hashed)
    assert set(hashed) <= set(Config().flat()), "names real settings"


def test_every_hashed_setting_changes_the_hash() -> None:
    """No setting is listed without being hashed (a changed value of each one changes the hash)."""
    base = Config().flat()
    for setting in params.hashed_settings():
        value = base[setting]
        other: Any = (
            not value
            if isinstance(value, bool)
            else value + 1
            if isinstance(value, int)
            else value / 2 + 0.001
            if isinstance(value, float)
            else [*value, "x"]
            if isinstance(value, list)
            else value + "x"
        )
        section, key = setting.split(".")
        changed = Config()
        setattr(getattr(changed, section), key, other)
        assert changed.md5() != Config().md5(), setting


def test_a_crashed_run_resumes_after_turning_progress_bars_off(tmp_path: Path) -> None:
    """The resume key is built from the params hash: a progress toggle between crash and rerun must not
    start a second run (and train from step 0)."""
    tags = {"data.md5": "d" * 32 + ".dir", "data.rev": "workspace"}
    cfg = Config()
    first, _ = tracking.open_run(cfg, tmp_path, tags, tracking.resume_key(cfg.md5(), tags["data.md5"], "workspace"))
    tracking.close_run(first, "KILLED", "interrupted by Ctrl-C (SIGINT) at step 3")
    quiet = _with("train.progress", False)
    again, resumed = tracking.open_run(
        quiet, tmp_path, tags, tracking.resume_key(quiet.md5(), tags["data.md5"], "workspace")
    )
    assert resumed and again == first


def test_the_readme_lists_exactly_the_hashed_settings() -> None:
    text = (REPO / "README.md").read_text()
    paragraph = text[text.index("**What `params.md5` hashes**") :].split("Not hashed", 1)[0]
    listed = {
        f"{section}.{name}"
        for section, names in re.findall(r"`(\w+)`:\s*((?:`\w+`(?:,\s*)?)+)", paragraph)
        for name in re.findall(r"`(\w+)`", names)
    }
    assert listed == set(params.hashed_settings())


def test_params_help_says_which_settings_leave_the_hash() -> None:
    lines = {line.split(":")[0].strip(): line for line in params.describe().splitlines() if line.startswith("  ")}
    assert "(not in params.md5)" in lines["progress"] and "(not in params.md5)" not in lines["max_length"]
    assert "promotion:  # not in params.md5" in params.describe().splitlines()
