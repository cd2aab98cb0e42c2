"""`data ensure` regenerates only the default corpus that no cache or remote holds; never over real data."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from intent_mlops.data import commands, versioning
from intent_mlops.data.io import DataError
from tests.conftest import REPO


def _default_project(tmp_path: Path) -> Path:
    root = tmp_path / "p"
    root.mkdir()
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    versioning.init_project(root, str(tmp_path / "remote"))
    return root


def test_fresh_clone_regenerates_the_default_corpus(tmp_path: Path) -> None:
    root = _default_project(tmp_path)
    shutil.copy(REPO / "data.dvc", root / "data.dvc")  # a clone: data.dvc, no data, empty remote
    assert commands.data_ensure(root) == 0
    assert versioning.dvc_file_md5(root / "data.dvc") == versioning.dvc_file_md5(REPO / "data.dvc")
    assert (root / versioning.DATA_FILE).exists()


def test_real_data_missing_from_the_remote_is_never_replaced(tmp_path: Path) -> None:
    root = _default_project(tmp_path)
    real = pd.DataFrame({"text": [f"real customer text {i}" for i in range(60)], "label": ["a", "b"] * 30})
    md5 = versioning.track(root, real)
    dvc_file = (root / "data.dvc").read_text()
    shutil.rmtree(root / "data")
    shutil.rmtree(root / ".dvc" / "cache")
    shutil.rmtree(tmp_path / "remote")
    with pytest.raises(DataError, match=f"could not pull {md5}"):
        commands.data_ensure(root)
    assert (root / "data.dvc").read_text() == dvc_file, "data.dvc unchanged"
    assert not (root / "data").exists(), "no demo data written"


def test_unreachable_remote_fails_even_for_the_default_corpus(tmp_path: Path) -> None:
    root = _default_project(tmp_path)
    shutil.copy(REPO / "data.dvc", root / "data.dvc")
    from dvc.repo import Repo

    with Repo(str(root)).config.edit() as conf:  # a remote this machine cannot ask (no dvc-s3 here)
        conf["remote"]["local"] = {"url": "s3://intent-mlops-no-such-bucket/data"}
    with pytest.raises(DataError, match="could not pull"):
        commands.data_ensure(root)
    assert not (root / "data").exists()
    assert (root / "data.dvc").read_text() == (REPO / "data.dvc").read_text()
