"""Data versioning through DVC: track, push, pull a git revision's data, reproduce the splits.

``data/`` is tracked by ``data.dvc``; the ``prepare`` stage of ``dvc.yaml`` turns it into
``splits/`` and ``dvc.lock`` records both hashes. A training run on another git revision's
data works in a detached git worktree of that revision that shares this project's DVC cache,
so the user's workspace is never touched (a pull into the workspace itself only ever removes the
partial files of an interrupted DVC copy, see ``remove_partial_copies``).
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from intent_mlops.data.io import DataError, canonical, write_csv
from intent_mlops.faults import failpoint

DATA_DIR = "data"
DATA_FILE = "data/intents.csv"
DATA_DVC = "data.dvc"
PREPARE_STAGE = "prepare"
SPLITS_DIR = "splits"
WORKSPACE = "workspace"
# DVC copies a file to ``.<token_urlsafe(16)>.tmp`` beside its target and renames it when complete
# (``dvc_objects.fs.utils.tmp_fname``); a process killed mid-copy leaves that name behind.
_DVC_PARTIAL = re.compile(r"^\.[A-Za-z0-9_-]{22}\.tmp$")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataVersion:
    """Where one data version was materialised and what identifies it."""

    workdir: Path
    raw_csv: Path
    data_md5: str
    rev: str
    commit: str


@dataclass(frozen=True)
class Splits:
    folder: Path
    md5: str


def git(root: Path | str, *args: str) -> str:
    out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    if out.returncode != 0:
        raise DataError(f"git {' '.join(args)} failed in {root}: {out.stderr.strip()}")
    return out.stdout.strip()


def git_commit(root: Path | str) -> str:
    """HEAD's sha (``+dirty`` when tracked files differ), or ``unknown`` outside git."""
    try:
        sha = git(root, "rev-parse", "HEAD")
    except DataError:
        return "unknown"
    dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--"], cwd=root).returncode != 0
    return sha + ("+dirty" if dirty else "")


def _repo(root: Path | str) -> Any:
    from dvc.repo import Repo

    return Repo(str(root))


def dvc_file_md5(path: Path | str) -> str:
    """The hash a ``.dvc`` file records for its single output."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: not found; track data first with `intent-mlops data import FILE`")
    outs = (yaml.safe_load(path.read_text()) or {}).get("outs") or []
    if len(outs) != 1 or "md5" not in outs[0]:
        raise DataError(f"{path}: expected exactly one output with an md5")
    return str(outs[0]["md5"])


def dir_md5(files: dict[str, Path]) -> str:
    """The ``.dir`` hash ``dvc add`` would record for a folder holding ``files`` (name -> path).

    Lets a caller know what a data set *would* be tracked as without writing it to ``data/``.
    """
    from dvc_data.hashfile.hash_info import HashInfo
    from dvc_data.hashfile.meta import Meta
    from dvc_data.hashfile.tree import Tree

    from intent_mlops.data.io import file_md5

    tree = Tree()
    for name, path in sorted(files.items()):
        tree.add(tuple(Path(name).parts), Meta(size=path.stat().st_size), HashInfo("md5", file_md5(path)))
    tree.digest()
    return str(tree.hash_info.value)


def is_missing_everywhere(root: Path | str, md5: str) -> bool:
    """True only when neither the local cache nor a reachable default remote holds ``md5``.

    A remote that cannot be asked (credentials, network, a missing plugin) is not "missing":
    the caller must then fail instead of assuming the data is gone.
    """
    repo = _repo(root)
    if repo.cache.local.exists(md5):
        return False
    try:
        return not repo.cloud.get_remote_odb(None).exists(md5)
    except Exception:  # any failure to ask means we do not know
        return False


def dvc_error(exc: BaseException) -> str:
    """DVC's own message in one line (its errors span several lines with URLs)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:400]


def init_project(root: Path | str, remote_url: str) -> None:
    """``git init`` + ``dvc init`` + a default remote, for a new project (tests, new users)."""
    from dvc.repo import Repo

    root = Path(root)
    if not (root / ".git").exists():
        git(root, "init", "-q")
    if not (root / ".dvc").exists():
        Repo.init(str(root))
    repo = _repo(root)
    with repo.config.edit() as conf:
        conf["remote"]["local"] = {"url": remote_url}
        conf["core"]["remote"] = "local"
        conf["core"]["autostage"] = True


def track(root: Path | str, df: pd.DataFrame, *, push: bool = True) -> str:
    """Write ``df`` as the tracked data set, ``dvc add`` and push; returns the DVC hash."""
    root = Path(root)
    write_csv(canonical(df).reset_index(drop=True), root / DATA_FILE)
    repo = _repo(root)
    repo.add(str(root / DATA_DIR))
    if push:
        repo.push(targets=[str(root / DATA_DVC)])
    return dvc_file_md5(root / DATA_DVC)


WORKTREES = ".intent-mlops/worktrees"


def resolve_revision(root: Path | str, rev: str) -> str:
    """The commit ``rev`` names, checked to record a ``data.dvc``; a :class:`DataError` otherwise.

    Cheap (two git calls, no DVC): the CLI checks ``--data-rev`` with it before a flow starts,
    and a wrong revision is a user error, not something a retry can fix.
    """
    found = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}"],
        cwd=root,
        capture_output=True,
        text=True,
    )
    if found.returncode != 0:
        if subprocess.run(["git", "rev-parse", "--git-dir"], cwd=root, capture_output=True).returncode != 0:
            raise DataError(f"{root} is not a git repository: --data-rev needs the project's git history")
        raise DataError(f"unknown git revision {rev!r} (list commits with `git log --oneline -- {DATA_DVC}`)")
    sha = found.stdout.strip()
    has = subprocess.run(["git", "cat-file", "-e", f"{sha}:{DATA_DVC}"], cwd=root, capture_output=True)
    if has.returncode != 0:
        raise DataError(f"revision {rev!r} ({sha[:10]}) has no {DATA_DVC}: it predates the tracked data")
    return sha


def recorded_md5(root: Path | str, rev: str | None = None) -> str:
    """The data hash ``data.dvc`` records in the workspace (``rev`` None) or in commit ``rev``."""
    root = Path(root)
    if rev in (None, "", WORKSPACE):
        return dvc_file_md5(root / DATA_DVC)
    text = git(root, "show", f"{resolve_revision(root, str(rev))}:{DATA_DVC}")
    outs = (yaml.safe_load(text) or {}).get("outs") or []
    if len(outs) != 1 or "md5" not in outs[0]:
        raise DataError(f"{DATA_DVC} at {rev!r}: expected exactly one output with an md5")
    return str(outs[0]["md5"])


def worktree_path(root: Path | str, sha: str, scratch: Path | str | None = None) -> Path:
    """Where the detached worktree of commit ``sha`` is made (``.intent-mlops/worktrees/<sha>``)."""
    return (Path(scratch) if scratch else Path(root).resolve() / WORKTREES) / sha


def remove_worktree(root: Path | str, sha: str, scratch: Path | str | None = None) -> bool:
    """Remove the worktree :func:`pull` made for ``sha`` (the DVC cache is the project's and stays).

    Returns whether there was one. Splits reproduced there are in the shared DVC cache already, so
    a later run on the same revision checks them out again instead of recomputing them.
    """
    work = worktree_path(root, sha, scratch)
    if not work.exists():
        return False
    done = subprocess.run(["git", "worktree", "remove", "--force", str(work)], cwd=root, capture_output=True)
    if done.returncode != 0 or work.exists():  # not registered any more (e.g. moved project): plain folder
        shutil.rmtree(work, ignore_errors=True)
    subprocess.run(["git", "worktree", "prune"], cwd=root, capture_output=True)
    return True


def pull(root: Path | str, rev: str | None = None, scratch: Path | str | None = None) -> DataVersion:
    """Materialise the data of git revision ``rev`` (None: the workspace's ``data.dvc``)."""
    root = Path(root).resolve()
    if rev in (None, "", WORKSPACE):
        return _pull_workspace(root)
    return _pull_revision(root, str(rev), Path(scratch) if scratch else root / WORKTREES)


def remove_partial_copies(work: Path, repo: Any | None = None) -> list[Path]:
    """Delete the half-written files a DVC copy killed mid-way left in ``data/`` or ``splits/``.

    DVC renames a copy into place only when it is complete, so such a file was never data; but DVC
    counts it as a change of the folder, and the run would stop with "has changes that data.dvc does
    not record" although the user changed nothing. A folder left empty by the removal is removed too.
    It runs under DVC's repository lock, so the live temporary file of a DVC command running in the
    same repository at that moment is never taken for a leftover (DVC holds the lock while it copies).
    Returns what was removed (logged as a warning).
    """
    removed: list[Path] = []
    with (repo if repo is not None else _repo(work)).lock:
        for folder in (work / DATA_DIR, work / SPLITS_DIR):
            if folder.is_dir():
                here = [p for p in folder.rglob(".*.tmp") if p.is_file() and _DVC_PARTIAL.match(p.name)]
                for path in here:
                    path.unlink()
                removed += here
                if here and not any(p.is_file() for p in folder.rglob("*")):
                    # DVC reads an empty folder as changed data, a missing one as not checked out
                    shutil.rmtree(folder)
    if removed:
        log.warning("removed %d partial file(s) of an interrupted DVC copy: %s", len(removed), removed)
    return removed


def check_workspace(root: Path | str, repo: Any | None = None) -> bool:
    """Refuse ``data/`` when it holds work that ``data.dvc`` does not record; True when a pull is due.

    The one check of the workspace before anything reads or replaces it (a run's pull, ``data add``,
    ``data import``). Unrecorded work is a file whose content is neither what ``data.dvc`` records nor
    saved in the DVC cache (DVC's own "unsaved file" rule): a checkout would destroy it, so the check
    names it and stops. A workspace that merely holds another saved version (``git pull`` or ``git
    checkout`` changed ``data.dvc``, ``dvc checkout`` not run yet) is no local change: the pull replaces it.
    Nothing is changed here except the leftovers of an interrupted DVC copy (:func:`remove_partial_copies`).
    """
    root = Path(root)
    repo = repo if repo is not None else _repo(root)
    remove_partial_copies(root, repo)
    status = repo.status(targets=[str(root / DATA_DVC)])
    unsaved = _unsaved_files(root, repo) if status else []
    if unsaved:
        raise DataError(
            f"{root / DATA_DIR}: has changes that {DATA_DVC} does not record ({', '.join(unsaved)}); "
            "keep them with `intent-mlops data import FILE` (or `dvc add data`), "
            f"or discard them with `dvc checkout --force {DATA_DVC}`"
        )
    return bool(status)


def _unsaved_files(root: Path, repo: Any) -> list[str]:
    """``data/...`` names of the files a checkout of ``data.dvc`` would lose (see :func:`check_workspace`)."""
    from intent_mlops.data.io import file_md5

    folder = root / DATA_DIR
    recorded = set(_manifest(repo, dvc_file_md5(root / DATA_DVC)).values())
    unsaved = []
    for path in sorted(folder.rglob("*")) if folder.is_dir() else []:
        if path.is_file():
            md5 = file_md5(path)
            if md5 not in recorded and not repo.cache.local.exists(md5):
                unsaved.append(path.relative_to(root).as_posix())
    return unsaved


def _pull_workspace(root: Path) -> DataVersion:
    repo = _repo(root)
    _pull_checked(repo, root, pull=check_workspace(root, repo))
    return DataVersion(
        workdir=root,
        raw_csv=root / DATA_FILE,
        data_md5=dvc_file_md5(root / DATA_DVC),
        rev=WORKSPACE,
        commit=git_commit(root),
    )


def _pull_checked(repo: Any, work: Path, pull: bool) -> None:
    """``dvc pull`` of ``data.dvc`` (when DVC says it is needed), then every file of ``data/`` checked
    against the hash ``data.dvc`` records.

    DVC re-hashes a changed cache file, but trusts what a remote sends (dvc#5978, dvc#9641): a
    corrupted or replaced remote file reaches the workspace, and the cache under the good hash, and
    would be trained on as the recorded data version. After that DVC's status calls the workspace
    clean (its state records the hash it was told), so the check runs on every call, not only after
    a pull: a run killed between the pull and the check is caught by the next one. A file that is
    not what ``data.dvc`` records is removed from the workspace and the cache (so a later pull
    fetches it again) and the run stops naming it. A file that neither the cache nor the remote
    holds stops it the same way.
    """
    expected = dvc_file_md5(work / DATA_DVC)
    try:
        if pull:
            repo.pull(targets=[str(work / DATA_DVC)])
            failpoint("data-pulled")
    except Exception as exc:
        missing = [name for name, md5 in _manifest(repo, expected).items() if is_missing_everywhere(work, md5)]
        if missing or is_missing_everywhere(work, expected):
            names = ", ".join(f"{DATA_DIR}/{name}" for name in missing) or DATA_DVC
            raise DataError(
                f"{work / DATA_DVC}: {names} is in neither the DVC cache nor the remote "
                f"({dvc_error(exc)[:160]}); push it from a machine that has it, or track the data again"
            ) from exc
        raise  # the remote could not be asked: I/O, retried by the caller
    folder = work / DATA_DIR
    files = {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}
    if dir_md5(files) == expected:
        return
    from intent_mlops.data.io import file_md5

    manifest = _manifest(repo, expected)
    for name, path in files.items():
        got, want = file_md5(path), manifest.get(name)
        if got == want:
            continue
        path.unlink()
        cached = Path(repo.cache.local.oid_to_path(want)) if want else None
        if cached is not None and cached.exists() and file_md5(cached) != want:
            cached.chmod(0o644)
            cached.unlink()
        raise DataError(
            f"{path}: content (md5 {got}) is not what {DATA_DVC} records ({want or 'no such file'}): the copy "
            f"fetched from the DVC remote{_remote_file(repo, want)} is corrupted or was replaced; it was removed, "
            "nothing was trained. Push a good copy (`dvc push` where the data is intact) and run again"
        )
    raise DataError(f"{folder}: files differ from what {DATA_DVC} records ({sorted(manifest)} expected)")


def _remote_file(repo: Any, md5: str | None) -> str:
    try:
        return f" ({repo.cloud.get_remote_odb(None).oid_to_path(md5)})" if md5 else ""
    except Exception:  # no default remote, or one that cannot say: the message stands without it
        return ""


def _manifest(repo: Any, dir_md5_: str) -> dict[str, str]:
    """relpath -> md5 of a ``.dir`` object from the cache ({} when the cache does not hold it)."""
    import json

    path = Path(repo.cache.local.oid_to_path(dir_md5_))
    if not dir_md5_.endswith(".dir") or not path.exists():
        return {}
    return {entry["relpath"]: entry["md5"] for entry in json.loads(path.read_text())}


def _worktree(root: Path, sha: str, scratch: Path) -> Path:
    """The detached worktree of ``sha`` (made once), sharing this project's DVC cache and remotes."""
    work = worktree_path(root, sha, scratch)
    if not work.exists():
        scratch.mkdir(parents=True, exist_ok=True)
        git(root, "worktree", "prune")
        git(root, "worktree", "add", "--detach", "--force", str(work), sha)
    _share_dvc_config(root, work)
    return work


def tracked_file(root: Path | str, path: str, rev: str) -> Path:
    """``path`` (a file DVC or git tracks, relative to the project) as commit ``rev`` records it,
    materialised in that commit's worktree (the batch flow reads inputs this way)."""
    root = Path(root).resolve()
    found = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}"],
        cwd=root, capture_output=True, text=True,
    )  # fmt: skip
    if found.returncode != 0:
        raise DataError(f"unknown git revision {rev!r}")
    work = _worktree(root, found.stdout.strip(), root / WORKTREES)
    target = work / path
    try:
        _repo(work).pull(targets=[str(target)])
    except Exception as exc:  # not DVC-tracked (plain git file) or not pullable: checked below
        if not target.exists():
            raise DataError(f"{path} at revision {rev}: not in git or DVC there ({dvc_error(exc)})") from exc
    if not target.is_file():
        raise DataError(f"{path} at revision {rev}: not a file")
    return target


def _pull_revision(root: Path, rev: str, scratch: Path) -> DataVersion:
    sha = resolve_revision(root, rev)
    work = _worktree(root, sha, scratch)
    # The pipeline and its params are this checkout's; only the data comes from `rev`.
    for name in ("dvc.yaml", "params.yaml"):
        if (root / name).exists():
            shutil.copy2(root / name, work / name)
    repo = _repo(work)
    remove_partial_copies(work, repo)
    target = str(work / DATA_DVC)
    _pull_checked(repo, work, pull=bool(repo.status(targets=[target])))
    return DataVersion(
        workdir=work,
        raw_csv=work / DATA_FILE,
        data_md5=dvc_file_md5(work / DATA_DVC),
        rev=rev,
        commit=sha,
    )


def _share_dvc_config(root: Path, work: Path) -> None:
    """Point a worktree at this project's cache and remotes (DVC resolves relative URLs)."""
    main = _repo(root)
    with _repo(work).config.edit("local") as local:
        # the cache's root (``.dvc/cache``), not ``cache.local.path`` (its ``files/md5`` object folder)
        local["cache"]["dir"] = str(Path(main.cache.local_cache_dir).resolve())
        for name, remote in main.config["remote"].items():
            local["remote"][name] = {"url": str(remote["url"])}


def reproduce_splits(workdir: Path | str) -> Splits:
    """``dvc repro prepare`` in ``workdir``; the splits' hash comes from ``dvc.lock``."""
    workdir = Path(workdir)
    # DVC resolves stage paths against the working directory: run it from the project.
    with contextlib.chdir(workdir):
        repo = _repo(workdir)
        remove_partial_copies(workdir, repo)
        repo.reproduce(PREPARE_STAGE)
    lock = yaml.safe_load((workdir / "dvc.lock").read_text()) or {}
    outs = lock.get("stages", {}).get(PREPARE_STAGE, {}).get("outs", [])
    if len(outs) != 1:
        raise DataError(f"{workdir / 'dvc.lock'}: stage {PREPARE_STAGE!r} should have one output")
    return Splits(folder=workdir / outs[0]["path"], md5=str(outs[0]["md5"]))
