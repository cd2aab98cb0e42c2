from pathlib import Path

import pytest

from intent_mlops.config.params import Config, ConfigError, describe, load_config, load_run_config, parse_overrides

REPO = Path(__file__).resolve().parents[2]


def test_params_yaml_matches_defaults() -> None:
    """params.yaml spells out every default: no silent drift between file and code."""
    assert load_config(REPO / "params.yaml") == Config()


def test_overrides_are_typed() -> None:
    cfg = load_config(REPO / "params.yaml", parse_overrides(["train.epochs=2", "train.learning_rate=3e-5"]))
    assert cfg.train.epochs == 2 and isinstance(cfg.train.epochs, int)
    assert cfg.train.learning_rate == pytest.approx(3e-5)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (["train.epochz=2"], "unknown key"),
        (["train.epochs=two"], "expected int"),
        (["train.progress=maybe"], "expected true/false"),
        (["epochs"], "section.key=value"),
        (["train.device=tpu"], "train.device"),
        (["train.layer_lr_decay=1.5"], "layer_lr_decay"),
    ],
)
def test_bad_overrides_name_the_field(override: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(REPO / "params.yaml", parse_overrides(override))


def test_split_params_only_from_params_yaml() -> None:
    with pytest.raises(ConfigError, match="dvc.lock"):
        load_run_config(REPO, ["split.seed=3"])


def test_params_md5_changes_with_values() -> None:
    a, b = Config(), load_config(None, {"train": {"epochs": 3}})
    assert a.md5() != b.md5() and a.md5() == Config().md5()


def test_describe_lists_help() -> None:
    text = describe()
    assert "learning_rate" in text and "Peak AdamW learning rate" in text
