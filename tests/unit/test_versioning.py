"""DVC versioning on a real git + DVC project in a temp folder (local remote)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from intent_mlops.data import commands, versioning
from intent_mlops.data.io import DataError, read_csv
from intent_mlops.data.validation import ValidationError
from tests.conftest import REPO, git


def test_default_data_reproduces_committed_data_dvc(tmp_path: Path) -> None:
    """`make run` on a fresh clone regenerates exactly the data that data.dvc records."""
    root = tmp_path / "p"
    root.mkdir()
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    versioning.init_project(root, str(tmp_path / "remote"))
    commands.data_generate(root)
    assert versioning.dvc_file_md5(root / "data.dvc") == versioning.dvc_file_md5(REPO / "data.dvc")
    assert any((tmp_path / "remote").rglob("*")), "pushed to the remote"


def test_pull_revision_and_workspace(project: Path) -> None:
    v1 = versioning.dvc_file_md5(project / "data.dvc")
    first = read_csv(project / versioning.DATA_FILE)
    extra = first.head(30).assign(text=lambda d: d["text"] + " (again, second batch)")
    commands.data_import(project, _csv(project, extra), append=True)
    git(project, "commit", "-qam", "data v2")
    v2 = versioning.dvc_file_md5(project / "data.dvc")
    assert v1 != v2

    old = versioning.pull(project, "HEAD~1")
    assert old.data_md5 == v1 and old.rev == "HEAD~1" and old.workdir != project
    assert len(read_csv(old.raw_csv)) == len(first)
    assert len(read_csv(project / versioning.DATA_FILE)) == len(first) + 30, "workspace untouched"

    shutil.rmtree(project / "data")
    shutil.rmtree(project / ".dvc" / "cache")
    ws = versioning.pull(project)
    assert ws.data_md5 == v2 and len(read_csv(ws.raw_csv)) == len(first) + 30, "pulled from the remote"

    splits = versioning.reproduce_splits(old.workdir)
    lock = yaml.safe_load((old.workdir / "dvc.lock").read_text())
    assert lock["stages"]["prepare"]["deps"][0]["md5"] == v1
    assert splits.md5 == lock["stages"]["prepare"]["outs"][0]["md5"]


def test_a_revision_shares_the_project_cache(project: Path) -> None:
    """Data committed but never pushed is still readable at its revision: the worktree uses the
    project's DVC cache (not a second one that only the remote could fill)."""
    first = read_csv(project / versioning.DATA_FILE)
    extra = first.head(10).assign(text=lambda d: d["text"] + " (never pushed)")
    commands.data_import(project, _csv(project, extra), append=True, push=False)
    git(project, "commit", "-qam", "data v2, not pushed")
    shutil.rmtree(project.parent / "remote")
    at_head = versioning.pull(project, "HEAD")
    assert at_head.workdir != project and len(read_csv(at_head.raw_csv)) == len(first) + 10
    assert not (at_head.workdir / ".dvc" / "cache").exists(), "no second cache in the worktree"
    assert versioning.tracked_file(project, versioning.DATA_FILE, "HEAD") == at_head.raw_csv


def test_modified_workspace_is_refused(project: Path) -> None:
    with open(project / versioning.DATA_FILE, "a") as fh:
        fh.write("an untracked new row,track_order\n")
    with pytest.raises(DataError, match="changes that data.dvc does not record"):
        versioning.pull(project)


def test_import_gates_before_touching_data(project: Path) -> None:
    before = (project / "data.dvc").read_text()
    bad = project.parent / "bad.csv"
    bad.write_text("text,label\n" + "".join(f"utterance number {i},a\n" for i in range(60)) + "   ,a\nsolo,b\n")
    with pytest.raises(ValidationError) as err:
        commands.data_import(project, bad)
    assert "blank text" in str(err.value) and "line=62" in str(err.value)
    assert "labels with fewer than 5 examples" in str(err.value)
    assert (project / "data.dvc").read_text() == before


def _csv(project: Path, df) -> Path:  # type: ignore[no-untyped-def]
    path = project.parent / "incoming.csv"
    df.to_csv(path, index=False)
    return path
