"""What several reliability tests do alike: a training run long enough to interrupt, its first
checkpoint, and the one-line failure the CLI must print when a server dies under it."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

# A training run long enough to be interrupted: 12 epochs, no early stop, a checkpoint every 3 steps.
LONG_TRAINING = ["train.epochs=12", "train.early_stopping_patience=12", "train.checkpoint_every_steps=3"]


def long_train_cmd(project: Path) -> list[str]:
    """``intent-mlops train`` of :data:`LONG_TRAINING` on ``project``, as a child process runs it."""
    return [sys.executable, "-m", "flows.cli", "--project", str(project), "train",
            *(arg for o in LONG_TRAINING for arg in ("--set", o))]  # fmt: skip


def checkpoint_written(project: Path) -> Callable[[], bool]:
    """True once a training run of ``project`` has written its first checkpoint."""
    return lambda: bool(list((project / ".intent-mlops" / "runs").glob("*/checkpoint/trainer_state.pt")))


def assert_failed_in_one_line(returncode: int | None, out: str, *words: str) -> None:
    """The command failed, printed no traceback, and its last line is one ``error:`` naming ``words``."""
    assert returncode not in (0, None), out[-3000:]
    assert "Traceback" not in out, out[-4000:]
    last = out.strip().splitlines()[-1]
    assert last.startswith("error: ") and all(w in last for w in words), out[-3000:]
