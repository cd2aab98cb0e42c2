"""The cached GX verdict is keyed by the rules' code, their params and GX's version, not the data alone."""

from __future__ import annotations

from pathlib import Path

import great_expectations as gx
import pytest

from intent_mlops.config.params import ValidationConfig
from intent_mlops.data import validation
from tasks import data as data_tasks


def _key(cfg: ValidationConfig | None = None) -> str:
    return data_tasks._gate_key(None, {"data_md5": "abc.dir", "cfg": cfg or ValidationConfig()})


def test_same_data_same_rules_same_key() -> None:
    assert _key() == _key()
    assert _key(ValidationConfig(max_chars=100)) != _key()


def test_a_changed_rule_changes_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = _key()
    source = Path(str(validation.__file__)).read_text()
    changed = tmp_path / "validation.py"
    changed.write_text(
        source + "\n\ndef _row_rules_v2() -> None:  # a rule added after the verdict was cached\n    pass\n"
    )
    monkeypatch.setattr(validation, "__file__", str(changed))
    assert _key() != before


def test_a_gx_upgrade_changes_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    before = _key()
    monkeypatch.setattr(gx, "__version__", "99.0.0")
    assert _key() != before
