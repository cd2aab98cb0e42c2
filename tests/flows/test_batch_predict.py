"""The batch-predict flow and `serve-model` on a trained project: the champion labels a file and
live requests the same way, with the registry's version on every answer (issue 14, items 2-3)."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest

from flows.batch import batch_predict_flow
from flows.training import train_flow
from intent_mlops.config.params import load_run_config
from intent_mlops.data.io import read_csv
from intent_mlops.monitoring.log import open_store, read_log
from tests.conftest import git

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]
COLUMNS = ["intent", "intent_score", "out_of_scope", "ood_score", "top1_intent", "top1_probability",
           "top3_intent", "model_version", "error"]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _post(url: str, body: bytes, content_type: str | None = "application/json") -> tuple[int, Any]:
    """POST with exactly the headers given (urllib would add a form Content-Type of its own)."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        conn.request("POST", parts.path, body=body, headers={"Content-Type": content_type} if content_type else {})
        r = conn.getresponse()
        raw = r.read()
    finally:
        conn.close()
    try:
        return r.status, json.loads(raw)
    except ValueError:
        return r.status, raw.decode(errors="replace")


def test_batch_file_and_live_requests_use_the_champion(project: Path, tmp_path: Path) -> None:
    assert train_flow(project_dir=str(project))["version"] == "1"
    test = read_csv(project / "splits" / "test.csv")
    rows = pd.concat([test, pd.DataFrame({"text": ["   ", ""], "label": ["?", "?"]})], ignore_index=True)
    rows.insert(0, "ticket", range(len(rows)))
    src = tmp_path / "tickets.csv"
    rows.to_csv(src, index=False)

    # a file in, the same rows out with intents; chunks smaller than the file; blank rows get an error
    out = batch_predict_flow(input_path=str(src), output_path=str(tmp_path / "out.parquet"),
                             project_dir=str(project), chunk_rows=100, progress=False)  # fmt: skip
    assert out["model_version"] == "intent-classifier/1" and out["rows"] == len(rows) and out["error_rows"] == 2
    got = pd.read_parquet(tmp_path / "out.parquet")
    assert list(got.columns[:3]) == ["ticket", "text", "label"] and set(COLUMNS) <= set(got.columns)
    assert got["ticket"].tolist() == rows["ticket"].astype(str).tolist(), "row order kept, input read as text"
    assert (got["model_version"] == "intent-classifier/1").all()
    scored = got[got["error"].isna()]
    assert (scored["intent"] == scored["label"]).mean() >= 0.8
    assert got["error"].notna().sum() == 2 and got.loc[got["error"].notna(), "intent"].isna().all()

    # every answered row is in the prediction log, numbered as in the input, under the flow run's id
    store = open_store(project, load_run_config(project).monitoring)
    logged = read_log(store, datetime.now(UTC) - timedelta(hours=1))
    assert len(logged) == len(rows) - 2 and logged["source"].str.startswith("batch:").all()
    assert sorted(logged["row"]) == [i for i in range(len(rows)) if i not in (len(rows) - 2, len(rows) - 1)]
    by_row = logged.set_index("row")
    assert (by_row.loc[scored.index, "intent"].to_numpy() == scored["intent"].to_numpy()).all()

    # the batch is on record in MLflow
    client = mlflow.MlflowClient(f"sqlite:///{project / 'mlruns' / 'mlflow.db'}")
    run = client.get_run(out["mlflow_run_id"])
    assert run.data.tags["intent-mlops.kind"] == "batch-predict"
    assert run.data.metrics["batch_rows"] == len(rows) and run.data.metrics["batch_error_rows"] == 2
    assert "batch_rows_per_second" in run.data.metrics and "batch_out_of_scope_rate" in run.data.metrics

    # a DVC-tracked file at a git revision; then the input changes in the workspace, the revision does not
    (project / "inbox").mkdir()
    rows.to_csv(project / "inbox" / "day1.csv", index=False)
    subprocess.run([sys.executable, "-m", "dvc", "add", "inbox/day1.csv"], cwd=project, check=True,
                   capture_output=True)  # fmt: skip
    git(project, "add", "-A")
    git(project, "commit", "-qm", "inbox day 1")
    rows.head(3).to_csv(project / "inbox" / "day1.csv", index=False)
    at_rev = batch_predict_flow(input_path="inbox/day1.csv", output_path=str(tmp_path / "rev.csv"), rev="HEAD",
                                project_dir=str(project), progress=False)  # fmt: skip
    assert at_rev["rows"] == len(rows)

    # a failure leaves no output and an earlier output untouched
    before = (tmp_path / "rev.csv").read_bytes()
    pd.DataFrame({"utterance": ["hi"]}).to_csv(tmp_path / "wrong.csv", index=False)
    with pytest.raises(ValueError, match="no column 'text'"):
        batch_predict_flow(input_path=str(tmp_path / "wrong.csv"), output_path=str(tmp_path / "rev.csv"),
                           project_dir=str(project), progress=False)  # fmt: skip
    assert (tmp_path / "rev.csv").read_bytes() == before
    assert not list(tmp_path.glob(".*partial*")), "no partial file left"

    # live: `intent-mlops serve-model` answers like the batch, with the version; bad requests are 4xx
    port = _free_port()
    cli = Path(sys.executable).parent / "intent-mlops"
    server = subprocess.Popen([str(cli), "--project", str(project), "serve-model", "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=5):
                    break
            except OSError:
                assert server.poll() is None, server.stdout.read() if server.stdout else ""
                assert time.monotonic() < deadline, "serve-model did not answer /ping"
                time.sleep(1)
        texts = test["text"].head(5).tolist()
        status, body = _post(f"{url}/invocations", json.dumps({"inputs": {"text": texts}}).encode())
        assert status == 200, body
        preds = body["predictions"]
        assert [p["label"] for p in preds] == got["intent"].head(5).tolist()
        assert {p["model_version"] for p in preds} == {"intent-classifier/1"}
        assert _post(f"{url}/invocations", b'{"inputs": {"text": [""]}}')[0] == 400
        assert _post(f"{url}/invocations", b"{oops")[0] == 400
        assert _post(f"{url}/invocations", b'{"inputs": {"text": ["hi"]}}', None)[0] == 415
        assert _post(f"{url}/invocations", b"text=hi", "application/x-www-form-urlencoded")[0] == 415
    finally:
        server.terminate()
        server.wait(30)
    online = read_log(store, datetime.now(UTC) - timedelta(hours=1))
    online = online[online["source"] == "online"]
    assert online["text"].tolist() == texts and set(online["model_version"]) == {"intent-classifier/1"}
