"""Issue 11 item 5: commands in the wrong place fail in one line, before writing anything."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from intent_mlops.config.environment import NotAProjectError, project_root
from tests.conftest import FOUR_INTENTS, REPO


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PREFECT_HOME": str(cwd.parent / "prefect-home"), "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_data_import_outside_a_project_writes_nothing(tmp_path: Path) -> None:
    from intent_mlops.data.io import write_csv
    from intent_mlops.demo.corpus import generate

    df = generate(per_intent=20, label_noise=0.0, typo_rate=0.0)
    csv = write_csv(df[df["label"].isin(FOUR_INTENTS)], tmp_path / "my_intents.csv")  # passes the gate
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = cli("data", "import", str(csv), cwd=elsewhere)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"error: not inside an intent-mlops project (no params.yaml or .dvc found from {elsewhere} upward): "
        "cd into the project or pass --project DIR"
    ]
    assert list(elsewhere.iterdir()) == [], "nothing written where the command ran"


def test_project_option_must_name_a_project(tmp_path: Path) -> None:
    done = cli("--project", str(tmp_path), "data", "ensure", cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"--project {tmp_path}: no params.yaml or .dvc there" in done.stderr
    assert not (tmp_path / "data").exists()


def test_a_directory_as_the_csv_is_one_line(tmp_path: Path) -> None:
    root = tmp_path / "project"
    (root / "folder.csv").mkdir(parents=True)
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    done = cli("data", "import", "folder.csv", cwd=root)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        "error: folder.csv: is a directory; expected a CSV file with a header `text,label`"
    ]


def test_project_root_is_found_upward_or_refused(tmp_path: Path) -> None:
    (tmp_path / "p" / "sub").mkdir(parents=True)
    (tmp_path / "p" / "params.yaml").write_text("{}\n")
    assert project_root(tmp_path / "p" / "sub") == tmp_path / "p"
    with pytest.raises(NotAProjectError, match="cd into the project or pass --project DIR"):
        project_root(tmp_path)
    assert project_root(tmp_path, required=False) == tmp_path
