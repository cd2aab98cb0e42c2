"""Issue 11 items 6 and 7 on a whole run of the CLI: a quiet console, full logs kept, no worktree left.

``train --data-rev HEAD`` works in a git worktree of that revision; the console shows the progress bar,
the epoch lines and the summary, while the Prefect flow run keeps every INFO line of the tasks.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import git

pytestmark = pytest.mark.slow

NOISE = (
    "LOAD REPORT", "MISSING", "model card", "license", "Finished in state", "Traceback", "Downloading artifacts",
    "Loading weights", "Writing model shards", "| INFO", "didn't change, skipping", "ERROR", "Successfully registered",
    "Created version", "| WARNING", "Task run",
)  # fmt: skip


def test_train_prints_progress_and_summary_only(project: Path, tmp_path: Path) -> None:
    home = tmp_path / "prefect-home"
    cmd = [
        sys.executable, "-m", "flows.cli", "--project", str(project), "train", "--data-rev", "HEAD",
        "--set", "train.epochs=2", "--set", "train.progress=true",
    ]  # fmt: skip
    # issue 15 item 6: canary secrets in the environment must not reach any store or log
    canary = "canary-" + secrets.token_hex(8)
    planted = {"AWS_SECRET_ACCESS_KEY": canary, "HF_TOKEN": canary, "DATABASE_PASSWORD": canary}
    env = {**os.environ, "PREFECT_HOME": str(home), **planted}
    done = subprocess.run(cmd, env=env, capture_output=True, timeout=900)  # bytes: keep the bars' \r
    output = (done.stdout + done.stderr).decode()
    assert done.returncode == 0, output[-3000:]
    for noise in NOISE:
        assert noise not in output, (noise, output[-3000:])
    lines = [line.split("\r")[-1] for line in output.split("\n") if line.strip()]  # a bar's frames: one line
    assert len(lines) <= 25, "\n".join(lines)
    assert "train: 100%" in output and "epoch 2: dev accuracy" in output
    assert "registered intent-classifier version 1; aliases of this version: challenger" in output
    summary_end = done.stdout.decode().rstrip().splitlines()[-1].strip()
    assert summary_end.startswith("intent-mlops serve-model"), "the summary ends with how to use the model"

    worktrees = project / ".intent-mlops" / "worktrees"
    assert not worktrees.exists() or not any(worktrees.iterdir()), "the --data-rev worktree is removed"
    assert len([x for x in git(project, "worktree", "list").splitlines() if x.strip()]) == 1

    with sqlite3.connect(home / "prefect.db") as db:
        info = [row[0] for row in db.execute("select message from log where level = 20")]
    assert any(m.startswith("MLflow run ") and m.endswith("(new)") for m in info), "task INFO logs kept in Prefect"
    assert any(m.startswith("registered intent-classifier version 1") for m in info)
    assert (home / "temporary-server.log").exists()

    # `predict` gets the same console: the summary line, no Prefect INFO lines, no traceback
    (tmp_path / "in.csv").write_text("text\nwhere is my order\nwhat is the boiling point of mercury\n")
    (tmp_path / "wrong.csv").write_text("text\n")  # a header only: found by the flow, not the pre-check
    predict = [sys.executable, "-m", "flows.cli", "--project", str(project), "predict", "--alias", "challenger"]
    done = subprocess.run([*predict, str(tmp_path / "in.csv"), str(tmp_path / "out.csv")], env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    for noise in NOISE:
        assert noise not in output, (noise, output[-3000:])
    assert "wrote " in output and "2 rows with intent-classifier/1" in output, output
    assert len([x for x in output.splitlines() if x.strip() and "predict in.csv" not in x]) <= 3, output
    # an input problem found inside the flow: one line naming the file, exit 2, earlier output untouched
    before = (tmp_path / "out.csv").read_bytes()
    done = subprocess.run([*predict, str(tmp_path / "wrong.csv"), str(tmp_path / "out.csv")], env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and "| INFO" not in done.stdout + done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(f"error: {tmp_path / 'wrong.csv'}: no rows to predict")
    assert (tmp_path / "out.csv").read_bytes() == before

    # nothing the run, the batch and Prefect wrote holds the canary: databases, artifacts, logs, caches
    stores = [project / "mlruns", project / ".intent-mlops", home]
    files = [f for folder in stores for f in folder.rglob("*") if f.is_file()]
    assert len(files) > 20 and any(f.name == "prefect.db" for f in files) and any(f.name == "mlflow.db" for f in files)
    assert any(f.suffix == ".parquet" and "predictions" in f.parts for f in files), "the prediction log is scanned"
    leaked = [str(f) for f in files if canary.encode() in f.read_bytes()]
    assert not leaked, f"the canary secret was written to {leaked}"
