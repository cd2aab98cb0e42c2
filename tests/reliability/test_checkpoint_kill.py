"""Issue 15 item 1: SIGKILL in the middle of a checkpoint write.

The checkpoint is written under a temporary name and swapped in by two renames. A training process is
killed (SIGKILL, no clean-up) at each instant of that swap; the same training started again must
resume from the newest complete checkpoint (or start over when there was none yet) and finish with
the weights an uninterrupted run gets.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from intent_mlops.faults import ENV
from intent_mlops.train.fit import texts_labels
from intent_mlops.train.loop import train
from tests.conftest import REPO, four_intent_splits, tiny_train_config
from tests.unit.test_training import _assert_same_weights

pytestmark = pytest.mark.reliability

TRAIN = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from intent_mlops.train.fit import texts_labels
    from intent_mlops.train.loop import train
    from tests.conftest import four_intent_splits, tiny_train_config

    splits = {k: texts_labels(v) for k, v in four_intent_splits().items()}
    cfg = tiny_train_config(Path(sys.argv[1]), epochs=2, checkpoint_every_steps=3)
    train(cfg, *splits["train"], *splits["dev"], Path(sys.argv[2]))
    """
)


@pytest.mark.parametrize(("point", "resumes_from"), [("checkpoint-written", 0), ("checkpoint-swapped-out", 3)])
def test_sigkill_during_a_checkpoint_write_resumes(
    tiny_model_dir: Path, tmp_path: Path, point: str, resumes_from: int, record: Callable[[str, str], None]
) -> None:
    out = tmp_path / "run"
    env = {**os.environ, ENV: point}
    killed = subprocess.run([sys.executable, "-c", TRAIN, str(tiny_model_dir), str(out)], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert (out / "checkpoint.tmp").exists(), "killed with a checkpoint half-swapped"

    splits = {k: texts_labels(v) for k, v in four_intent_splits().items()}
    cfg = tiny_train_config(tiny_model_dir, epochs=2, checkpoint_every_steps=3)
    resumed = train(cfg, *splits["train"], *splits["dev"], out)
    assert resumed.resumed_from_step == resumes_from
    straight = train(cfg, *splits["train"], *splits["dev"], tmp_path / "straight")
    assert resumed.global_step == straight.global_step
    _assert_same_weights(straight.model_dir, resumed.model_dir, atol=1e-6)
    record(
        f"SIGKILL during a checkpoint write ({point})",
        f"rerun resumed from step {resumes_from}; final weights equal an uninterrupted run's",
    )
