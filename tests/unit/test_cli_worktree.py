"""Issue 11 item 7: the git worktree that ``--data-rev`` makes is removed when the command ends."""

from __future__ import annotations

import gc
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from intent_mlops.data import versioning
from tests.conftest import git


@pytest.fixture
def restore_process_state() -> Iterator[None]:
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, h in saved.items():
        signal.signal(s, h)
    gc.unfreeze()


def _worktrees(project: Path) -> list[str]:
    listing = git(project, "worktree", "list", "--porcelain").splitlines()
    return [line for line in listing if line.startswith("worktree ")]


def test_remove_worktree_keeps_the_shared_cache(project: Path) -> None:
    version = versioning.pull(project, "HEAD")
    assert version.workdir == versioning.worktree_path(project, version.commit) and version.workdir.is_dir()
    cache = sorted(p.name for p in (project / ".dvc" / "cache").rglob("*") if p.is_file())
    assert versioning.remove_worktree(project, version.commit)
    assert not version.workdir.exists() and len(_worktrees(project)) == 1
    assert sorted(p.name for p in (project / ".dvc" / "cache").rglob("*") if p.is_file()) == cache
    assert not versioning.remove_worktree(project, version.commit), "nothing left to remove"


@pytest.mark.parametrize("outcome", ["returns", "fails"])
def test_cli_removes_the_worktree_after_the_flow(
    project: Path, monkeypatch: pytest.MonkeyPatch, restore_process_state: None, outcome: str
) -> None:
    import flows.training
    from flows import cli, interrupts

    made: list[Path] = []

    def fake_run_training(root: Path, data_rev: str | None, overrides: list[str]) -> int:
        made.append(versioning.pull(root, data_rev).workdir)  # what the flow's pull-data task does
        if outcome == "fails":
            raise RuntimeError("the flow failed")
        return 0

    monkeypatch.setattr(interrupts, "start_prefect_server", lambda log_file: None)
    monkeypatch.setattr(flows.training, "run_training", fake_run_training)
    argv = ["--debug", "--project", str(project), "train", "--data-rev", "HEAD"]
    if outcome == "fails":
        with pytest.raises(RuntimeError):
            cli.main(argv)
    else:
        assert cli.main(argv) == 0
    assert made and made[0].parent == project / ".intent-mlops" / "worktrees"
    assert not made[0].exists() and len(_worktrees(project)) == 1
