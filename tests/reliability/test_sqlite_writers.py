"""Issue 15 item 5: several writers on the embedded SQLite store at once (mlflow#6490).

Separate processes do what the product does at the same time on one project: training runs (the
training loop's metric logger: a curve per step, params, tags, the run closed), batch-predict runs
(`log_batch_run`: metrics, params, a JSON artifact) and the registry and UI's reads (run and model
version searches, as the MLflow UI's pages make). Pass: every operation succeeds, none reports
"database is locked", and every run written is in the store afterwards.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import mlflow
import pytest

from tests.conftest import REPO

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

WORKER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    import mlflow
    from intent_mlops.config.params import load_run_config
    from intent_mlops.inference.batch import BatchResult, log_batch_run
    from intent_mlops.registry import tracking

    root, kind, n = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    exp = tracking.connect(load_run_config(root).mlflow, root)
    client = mlflow.MlflowClient()
    done, errors = 0, []
    for i in range(n):
        try:
            if kind == "train":
                run_id = client.create_run(exp, tags={"intent-mlops.kind": "train"}).info.run_id
                log = tracking.metric_logger(run_id)
                for step in range(25):
                    log({"train_loss": 1.0 / (step + 1), "learning_rate": 1e-4}, step)
                tracking.set_tags(run_id, {"data.md5": f"d{i}", "params.md5": "p"})
                tracking.log_metrics(run_id, {"dev_accuracy": 0.9, "test_accuracy": 0.9})
                tracking.close_run(run_id)
            elif kind == "batch":
                result = BatchResult(Path("out.csv"), 100, 99, 1, 0.5, {"greet": 60, "out_of_scope": 39}, "m/1")
                log_batch_run(exp, result, f"in-{i}.csv")
            else:  # the UI's reads
                client.search_runs([exp], max_results=100)
                client.search_registered_models()
                client.search_experiments()
            done += 1
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}")
    print(json.dumps({"kind": kind, "done": done, "errors": errors}))
    """
)

PROCESSES = {"train": (3, 12), "batch": (2, 30), "ui": (2, 150)}
"""kind -> (processes, operations each)."""


def test_concurrent_writers_on_sqlite_never_lock(project: Path, record: Callable[[str, str], None]) -> None:
    t0 = time.monotonic()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(project), kind, str(n)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for kind, (count, n) in PROCESSES.items()
        for _ in range(count)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    seconds = time.monotonic() - t0
    errors = [e for r in results for e in r["errors"]]
    assert not errors, errors[:5]
    assert not any("locked" in e for e in errors)
    expected = {kind: count * n for kind, (count, n) in PROCESSES.items()}
    done = {kind: sum(r["done"] for r in results if r["kind"] == kind) for kind in PROCESSES}
    assert done == expected

    uri = f"sqlite:///{project / 'mlruns' / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri, uri)
    exp = client.get_experiment_by_name("intent-classifier")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    kinds = [r.data.tags.get("intent-mlops.kind") for r in runs]
    assert kinds.count("train") == expected["train"] and kinds.count("batch-predict") == expected["batch"]
    assert all(r.info.status == "FINISHED" for r in runs)
    trained = [r for r in runs if r.data.tags.get("intent-mlops.kind") == "train"]
    assert all(len(client.get_metric_history(r.info.run_id, "train_loss")) == 25 for r in trained[:5])
    writes = expected["train"] * 29 + expected["batch"] * 4
    record(
        "several writers on the SQLite store at once (3 training, 2 batch, 2 UI readers)",
        f"{sum(done.values())} operations (~{writes} writes) in {seconds:.0f} s, 0 errors, 0 'database is locked'",
    )
