"""Issue 15 item 2: a corrupted or missing file in the DVC cache or remote.

DVC re-hashes a cache file that changed, but trusts what a remote sends (dvc#5978, dvc#9641): before
the fix, a corrupted remote copy reached ``data/`` (and the cache, under the good hash) and was
trained on as the recorded data version. Pass criteria: the pull fails naming the file, before
training; nothing corrupted is left in the workspace or the cache; no model version or alias
changes; once the remote is repaired, the same command succeeds.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from intent_mlops.data import versioning
from intent_mlops.data.io import DataError, file_md5
from intent_mlops.faults import ENV
from tests.conftest import REPO, git

pytestmark = pytest.mark.reliability

FILE_MD5_LEN = 32


def _objects(store: Path) -> list[Path]:
    """The data files (not ``.dir`` manifests) of a DVC cache or remote folder."""
    return [p for p in store.rglob("*") if p.is_file() and len(p.parent.name + p.name) == FILE_MD5_LEN]


def _corrupt(path: Path) -> None:
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x20  # one letter's case: still a valid CSV, so only a hash can tell
    path.write_bytes(bytes(data))


@pytest.fixture
def tracked(tmp_path: Path) -> tuple[Path, Path, str]:
    root, remote = tmp_path / "p", tmp_path / "remote"
    root.mkdir()
    versioning.init_project(root, str(remote))
    df = pd.DataFrame({"text": [f"utterance number {i}" for i in range(60)], "label": ["a", "b", "c"] * 20})
    versioning.track(root, df)
    git(root, "add", "-A")
    git(root, "commit", "-qm", "data")
    return root, remote, file_md5(root / versioning.DATA_FILE)


def test_corrupted_cache_copy_is_refetched(tracked: tuple[Path, Path, str], record: Callable[[str, str], None]) -> None:
    root, _, good = tracked
    (cached,) = _objects(root / ".dvc" / "cache")
    _corrupt(cached)
    shutil.rmtree(root / "data")
    versioning.pull(root)
    assert file_md5(root / versioning.DATA_FILE) == good
    record("DVC cache file corrupted, workspace data gone", "pull re-fetched the file from the remote (hash checked)")


def test_corrupted_remote_copy_is_refused_naming_the_file(
    tracked: tuple[Path, Path, str], record: Callable[[str, str], None]
) -> None:
    root, remote, good = tracked
    shutil.rmtree(root / ".dvc" / "cache")
    shutil.rmtree(root / "data")
    (stored,) = _objects(remote)
    _corrupt(stored)
    with pytest.raises(DataError) as caught:
        versioning.pull(root)
    message = str(caught.value)
    assert message.startswith(str(root / versioning.DATA_FILE)) and str(stored) in message, message
    assert "corrupted" in message
    assert not (root / versioning.DATA_FILE).exists(), "the corrupted copy is not left in the workspace"
    assert not _objects(root / ".dvc" / "cache"), "nor in the cache under the good hash"
    assert git(root, "status", "--porcelain") == "", "data.dvc untouched"

    _corrupt(stored)  # the same flip again: the remote's copy is repaired
    versioning.pull(root)
    assert file_md5(root / versioning.DATA_FILE) == good
    record("DVC remote file corrupted, no local copy", "DataError naming data/intents.csv and the remote file")


def test_sigkill_between_pull_and_check_is_caught_by_the_next_run(
    tracked: tuple[Path, Path, str], record: Callable[[str, str], None]
) -> None:
    """Killed after DVC wrote the corrupted file, before the check: DVC's status then calls the
    workspace clean, so only a check on every run (not only after a pull) still refuses it."""
    root, remote, _ = tracked
    shutil.rmtree(root / ".dvc" / "cache")
    shutil.rmtree(root / "data")
    (stored,) = _objects(remote)
    _corrupt(stored)
    pull = "import sys; from intent_mlops.data import versioning; versioning.pull(sys.argv[1])"
    killed = subprocess.run([sys.executable, "-c", pull, str(root)], cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, ENV: "data-pulled"}, timeout=300)  # fmt: skip
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert (root / versioning.DATA_FILE).exists(), "the corrupted copy was written before the kill"
    with pytest.raises(DataError, match="corrupted"):
        versioning.pull(root)
    assert not (root / versioning.DATA_FILE).exists()
    record("SIGKILL between the DVC pull and its check (corrupted remote)", "the next run refuses the file")


# Run in a child: DVC's copies are made to fail half-way, as a SIGKILL in the middle of a transfer
# would leave them. Reflinks are switched off so every copy is a byte copy (on XFS or Btrfs DVC would
# otherwise clone the file in one call), and the first copy into the chosen folder (argv[2]: the DVC
# cache, or the workspace's data/) writes half its bytes, syncs, and dies.
_KILLED_PULL = """
import errno, os, shutil, signal, sys
from dvc_objects.fs import system
from intent_mlops.data import versioning

def no_reflink(src, dst):
    raise OSError(errno.ENOTSUP, "reflink switched off by the test")

system.reflink = no_reflink
into = os.path.join(os.path.realpath(sys.argv[1]), sys.argv[2]) + os.sep

def half_then_die(src, dst, *args, **kwargs):
    if os.path.realpath(dst).startswith(into):
        data = open(src, "rb").read()
        with open(dst, "wb") as fh:
            fh.write(data[: len(data) // 2])
            fh.flush()
            os.fsync(fh.fileno())
        os.kill(os.getpid(), signal.SIGKILL)
    return _copyfile(src, dst, *args, **kwargs)

_copyfile, shutil.copyfile = shutil.copyfile, half_then_die
versioning.pull(sys.argv[1])
"""


@pytest.mark.parametrize(("into", "where"), [(".dvc/cache", "remote to cache"), ("data", "cache to workspace")])
def test_sigkill_in_the_middle_of_a_dvc_transfer(
    tracked: tuple[Path, Path, str], into: str, where: str, record: Callable[[str, str], None]
) -> None:
    """Killed with half a file written: the next run completes with the recorded data, and no
    partial file is ever taken for the data (DVC writes a temporary name and renames it).

    Before the fix, a kill during the checkout into ``data/`` left ``data/.<token>.tmp``, and every
    later run stopped with "has changes that data.dvc does not record"."""
    root, _, good = tracked
    shutil.rmtree(root / ".dvc" / "cache")
    shutil.rmtree(root / "data")
    killed = subprocess.run([sys.executable, "-c", _KILLED_PULL, str(root), into], cwd=REPO,
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert killed.returncode == -9, (killed.stdout + killed.stderr)[-2000:]
    partial = [p for p in (root / into).rglob(".*.tmp") if p.is_file()]
    assert partial, f"the kill left a partly written file in {into}/"
    assert all(file_md5(p) != good for p in partial)
    versioning.pull(root)
    assert file_md5(root / versioning.DATA_FILE) == good
    assert [file_md5(p) for p in _objects(root / ".dvc" / "cache")] == [good], "the cache holds the good copy"
    assert git(root, "status", "--porcelain") == "", "data.dvc untouched"
    assert not list((root / "data").glob(".*.tmp")), "the partial copy is gone"
    record(f"SIGKILL in the middle of a DVC copy, {where}", "half a file left behind; the next pull completes")


def test_file_missing_from_cache_and_remote(
    tracked: tuple[Path, Path, str], record: Callable[[str, str], None]
) -> None:
    root, remote, _ = tracked
    shutil.rmtree(root / "data")
    for store in (root / ".dvc" / "cache", remote):
        (obj,) = _objects(store)
        obj.unlink()
    with pytest.raises(DataError, match=r"data/intents.csv is in neither the DVC cache nor the remote"):
        versioning.pull(root)
    assert git(root, "status", "--porcelain") == ""
    record("DVC file deleted from cache and remote", "DataError naming data/intents.csv")


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_training_flow_stops_before_training_and_keeps_the_champion(
    project: Path, record: Callable[[str, str], None]
) -> None:
    from flows.training import train_flow

    first = train_flow(project_dir=str(project), overrides=["train.epochs=1", "promotion.min_macro_f1=0.0"])
    uri = f"sqlite:///{project / 'mlruns' / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri, uri)
    before = client.get_registered_model("intent-classifier").aliases
    assert str(before.get("champion")) == str(first["version"])
    status_before = git(project, "status", "--porcelain")
    dvc_file = (project / "data.dvc").read_bytes()
    runs_before = {r.info.run_id for r in client.search_runs([r.experiment_id for r in client.search_experiments()])}

    shutil.rmtree(project / ".dvc" / "cache")
    shutil.rmtree(project / "data")
    for stored in _objects(project.parent / "remote"):
        _corrupt(stored)
    with pytest.raises(DataError, match="corrupted"):
        train_flow(project_dir=str(project), overrides=["train.epochs=1"])

    versions = client.search_model_versions("name = 'intent-classifier'")
    assert [str(v.version) for v in versions] == [str(first["version"])], "no version created"
    assert client.get_registered_model("intent-classifier").aliases == before, "champion unchanged"
    runs = client.search_runs([r.experiment_id for r in client.search_experiments()])
    assert all(r.info.status != "RUNNING" for r in runs), "no run left RUNNING"
    assert {r.info.run_id for r in runs} == runs_before, "stopped before any MLflow run was opened"
    assert git(project, "status", "--porcelain") == status_before, "the workspace untouched"
    assert (project / "data.dvc").read_bytes() == dvc_file
    assert not (project / versioning.DATA_FILE).exists()
    record("training flow on a corrupted remote", "fails in pull-data; no new version, champion unchanged")
