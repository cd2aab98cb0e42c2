"""Issue 11 item 6, the parts that need no flow: --version, --help for users, the summary, `data ensure`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from flows.cli import _parser
from intent_mlops.data import versioning
from tests.conftest import REPO


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        _parser().parse_args(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"intent-mlops {version('intent-mlops')}"


def test_help_speaks_to_users() -> None:
    text = _parser().format_help()
    for code_note in ("core package", "lives beside the flows", "Prefect flow", "``"):
        assert code_note not in text, code_note
    for command in ("train", "retrain", "data", "params", "--project", "--debug", "--version"):
        assert command in text, command
    train_help = _parser()._subparsers._group_actions[0].choices["train"].format_help()  # type: ignore[union-attr]
    assert "--data-rev REV" in train_help and "--set KEY=VALUE" in train_help


def test_summary_names_this_versions_aliases_and_a_duplicate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from flows.training import print_outcome
    from intent_mlops.registry import tracking

    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.setattr(tracking, "duplicate_version", lambda name, v: "1" if v == "2" else None)
    metrics = {f"{s}_{m}": 0.9 for s in ("dev", "test") for m in ("accuracy", "macro_f1")}
    out = {
        "metrics": metrics, "registered_model": "intent-classifier", "version": "2", "run_id": "r2",
        "aliases": {"champion": "1", "challenger": "2", "previous-champion": "1"},
        "decision": {"decision": "refused", "reason": "refused: failed significance"},
        "data_md5": "d", "splits_md5": "s",
    }  # fmt: skip
    print_outcome(tmp_path, out)
    text = capsys.readouterr().out
    assert "registered intent-classifier version 2; aliases of this version: challenger\n" in text
    assert "note: this retrains the same data and params as version 1" in text
    assert "decision: refused: failed significance\n" in text and "champion is version 1" in text
    # the summary ends with how to use the model: this version is not the champion, so by number
    tail = text.rstrip().splitlines()[-3:]
    assert tail[0] == "Use the model (version 2; the champion is version 1):", text
    assert tail[1].split("#")[0].split() == ["intent-mlops", "predict", "--version", "2", "FILE.csv", "OUT.csv"]
    assert tail[2].split("#")[0].split() == ["intent-mlops", "serve-model", "--version", "2"]

    out["aliases"] = {"champion": "2"}
    print_outcome(tmp_path, out)
    tail = capsys.readouterr().out.rstrip().splitlines()[-3:]
    assert tail[0] == "Use the model (the champion, version 2):"
    assert tail[1].split("#")[0].split() == ["intent-mlops", "predict", "FILE.csv", "OUT.csv"]
    assert tail[2].split("#")[0].split() == ["intent-mlops", "serve-model"]


@pytest.mark.parametrize("command", [["ensure"], ["add"]], ids=["ensure", "add"])
def test_data_on_a_fresh_clone_prints_no_dvc_warning(tmp_path: Path, command: list[str]) -> None:
    """The regenerate path of a fresh clone is the normal case: no "cache files do not exist" warning.
    ``data add`` there appends to the regenerated default set (it never replaces it)."""
    root = tmp_path / "p"
    root.mkdir()
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    versioning.init_project(root, str(tmp_path / "remote"))
    shutil.copy(REPO / "data.dvc", root / "data.dvc")  # a clone: data.dvc, no data, empty remote
    files = [str(tmp_path / "batch.csv")] if command == ["add"] else []
    (tmp_path / "batch.csv").write_text(
        "text,label\n" + "".join(f"where is parcel {i},track_order\n" for i in range(5))
    )
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home")}
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", "--project", str(root), "data", *command, *files],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    output = done.stdout + done.stderr
    assert "WARNING" not in output and "do not exist" not in output, output
    assert "generated 3750 utterances" in output
    if command == ["ensure"]:
        assert versioning.dvc_file_md5(root / "data.dvc") == versioning.dvc_file_md5(REPO / "data.dvc")
    else:
        assert "data/intents.csv: 3755 rows" in output


WARNING_FLOW = """
import logging, sys
from flows.cli import _filter_console, _quiet_console
from intent_mlops.config.environment import apply_defaults
apply_defaults(sys.argv[1])
_quiet_console(False)
from prefect import flow, get_run_logger, task

@task
def open_run():
    get_run_logger().warning("this retrains the same data and params as version 1")
    logging.getLogger("intent_mlops.inference.predictor").warning("no checked fast variant; using torch fp32")

@flow
def train():
    open_run()
    print("summary line")

_filter_console()  # as `intent-mlops train` does once Prefect is imported
train()
"""


def test_console_warnings_are_plain_lines_not_prefect_records(tmp_path: Path) -> None:
    """A task's warning (e.g. "this retrains the same data and params") among the summary's plain
    lines reads like the CLI's own lines, not ``12:00:00.000 | WARNING | Task run '...' - ...``."""
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home")}
    done = subprocess.run([sys.executable, "-c", WARNING_FLOW, str(tmp_path)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "| WARNING" not in output and "Task run" not in output, output
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert "warning: this retrains the same data and params as version 1" in lines, output
    assert "warning: no checked fast variant; using torch fp32" in lines, output


def test_serve_help_names_every_deployment() -> None:
    from flows.deployments import declarations

    serve_help = _parser()._subparsers._group_actions[0].choices["serve"].format_help()  # type: ignore[union-attr]
    names = [entry["name"] for entry in declarations(REPO)]
    assert len(names) == 4
    for name in names:
        assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", serve_help), (name, serve_help)
