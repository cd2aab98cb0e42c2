"""`data add` / `data import` check the workspace against data.dvc first: tracked rows are never lost.

A real git + DVC project in a temp folder with a local remote; clones and `git pull` as a team has them.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from intent_mlops.data import commands, versioning
from intent_mlops.data.io import DataError, read_csv
from tests.conftest import git

LABELS = ["a", "b", "c"]


def _rows(prefix: str, n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {"text": [f"{prefix} utterance {i}" for i in range(n)], "label": [LABELS[i % 3] for i in range(n)]}
    )


def _csv(folder: Path, name: str, df: pd.DataFrame) -> Path:
    path = folder / name
    df.to_csv(path, index=False)
    return path


@pytest.fixture
def tracked(tmp_path: Path) -> Path:
    """A committed project tracking 60 rows, pushed to a local DVC remote."""
    root = tmp_path / "p"
    root.mkdir()
    versioning.init_project(root, str(tmp_path / "remote"))
    versioning.track(root, _rows("tracked", 60))
    git(root, "add", "-A")
    git(root, "commit", "-qm", "data v1")
    return root


def _clone(root: Path, to: Path) -> Path:
    git(root.parent, "clone", "-q", str(root), str(to))
    return to


def _texts(root: Path) -> list[str]:
    return read_csv(root / versioning.DATA_FILE)["text"].tolist()


def test_add_on_a_fresh_clone_keeps_the_tracked_rows(tracked: Path, tmp_path: Path) -> None:
    clone = _clone(tracked, tmp_path / "clone")
    assert not (clone / "data").exists(), "a clone has data.dvc, not the data"
    commands.data_import(clone, _csv(tmp_path, "new.csv", _rows("new", 60)), append=True)
    texts = _texts(clone)
    assert len(texts) == 120 and texts[:60] == _texts(tracked), "the tracked rows come first, all of them"


def test_add_after_git_pull_keeps_the_teammates_rows(tracked: Path, tmp_path: Path) -> None:
    """data.dvc changed by a pull, data/ still the previous version: the add builds on what data.dvc records."""
    mate = _clone(tracked, tmp_path / "mate")
    versioning.pull(mate)
    versioning.track(mate, pd.concat([read_csv(mate / versioning.DATA_FILE), _rows("teammate", 30)]))
    git(mate, "add", "-A")
    git(mate, "commit", "-qm", "data v2 (teammate)")
    git(tracked, "pull", "-q", "--no-rebase", str(mate), "HEAD")
    assert len(_texts(tracked)) == 60, "dvc checkout not run yet: the workspace holds v1"

    commands.data_import(tracked, _csv(tmp_path, "mine.csv", _rows("mine", 30)), append=True)
    texts = _texts(tracked)
    assert sum(t.startswith("teammate") for t in texts) == 30, "the teammate's rows are kept"
    assert sum(t.startswith("mine") for t in texts) == 30 and len(texts) == 120


@pytest.mark.parametrize("append", [True, False], ids=["add", "import"])
def test_local_changes_are_refused_by_name_and_nothing_changes(tracked: Path, tmp_path: Path, append: bool) -> None:
    data = tracked / versioning.DATA_FILE
    with open(data, "a") as fh:
        fh.write("an edit nobody tracked,a\n")
    (tracked / "data" / "notes.csv").write_text("text,label\nstray file,b\n")
    before = {p: p.read_bytes() for p in (tracked / "data.dvc", data, tracked / "data" / "notes.csv")}
    with pytest.raises(DataError) as caught:
        commands.data_import(tracked, _csv(tmp_path, "new.csv", _rows("new", 60)), append=append)
    message = str(caught.value)
    assert "data/intents.csv" in message and "data/notes.csv" in message and "\n" not in message, message
    assert {p: p.read_bytes() for p in before} == before, "nothing changed"


def test_add_never_drops_tracked_duplicate_rows(tmp_path: Path) -> None:
    root = tmp_path / "p"
    root.mkdir()
    versioning.init_project(root, str(tmp_path / "remote"))
    tracked = _rows("tracked", 60)
    versioning.track(root, pd.concat([tracked, tracked.head(5)]))  # the same 5 rows twice, on purpose
    git(root, "add", "-A")
    git(root, "commit", "-qm", "data with repeated rows")
    batch = pd.concat([tracked.iloc[[7]], _rows("new", 10), _rows("new", 10).head(1)])
    commands.data_import(root, _csv(tmp_path, "batch.csv", batch), append=True)
    texts = _texts(root)
    assert texts[:65] == tracked["text"].tolist() + tracked["text"].head(5).tolist(), "tracked rows stay whole"
    assert texts[65:] == _rows("new", 10)["text"].tolist(), "the batch's repeats of existing rows are dropped"


def test_add_with_nothing_tracked_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "p"
    root.mkdir()
    versioning.init_project(root, str(tmp_path / "remote"))
    with pytest.raises(DataError, match="data.dvc"):
        commands.data_import(root, _csv(tmp_path, "new.csv", _rows("new", 60)), append=True)
    assert not (root / "data").exists() and not (root / "data.dvc").exists()


def test_a_run_after_checking_out_data_dvc_trains_on_what_it_records(tracked: Path) -> None:
    """The run's own pull uses the same check: a saved older version in data/ is replaced, not refused
    as a local change (data.dvc moved by `git checkout`, `dvc checkout` not run yet)."""
    v1 = versioning.dvc_file_md5(tracked / "data.dvc")
    v2 = versioning.track(tracked, pd.concat([_rows("tracked", 60), _rows("later", 30)]))
    git(tracked, "commit", "-qam", "data v2")
    git(tracked, "checkout", "-q", "HEAD~1", "--", "data.dvc")
    assert versioning.pull(tracked).data_md5 == v1 and len(_texts(tracked)) == 60
    git(tracked, "checkout", "-q", "HEAD", "--", "data.dvc")
    assert versioning.pull(tracked).data_md5 == v2 and len(_texts(tracked)) == 90
