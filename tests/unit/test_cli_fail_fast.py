"""Issue 11 item 3: a wrong ``--set`` or ``--data-rev`` fails before Prefect starts (no timing asserted:
the proof is structural, an empty Prefect home).

The CLI runs as a user runs it (a subprocess); its Prefect home stays empty, so no server started and
no flow run was left behind. Each message names what the user typed, in one line, without a traceback.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, git


def cli(*args: str, cwd: Path, prefect_home: Path) -> tuple[int, str, str, float]:
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI")}
    env["PREFECT_HOME"] = str(prefect_home)
    t0 = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    return done.returncode, done.stdout, done.stderr, time.monotonic() - t0


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git project: commit 1 has params.yaml only, commit 2 adds data.dvc (no DVC needed here)."""
    root = tmp_path / "project"
    root.mkdir()
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    git(root, "init", "-q")
    git(root, "add", "params.yaml")
    git(root, "commit", "-qm", "params only")
    shutil.copy(REPO / "data.dvc", root / "data.dvc")
    git(root, "add", "data.dvc")
    git(root, "commit", "-qm", "data")
    return root


def one_line_error(rc: int, stderr: str, home: Path) -> str:
    assert rc == 2, stderr
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) <= 2 and lines[0].startswith("error: "), stderr
    assert not home.exists(), "nothing of Prefect started (no server, no flow run)"
    return lines[0]


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("train.epochs=abc", "--set train.epochs=abc: expected int"),
        ("train.epochz=3", "--set train.epochz=3: unknown key"),
        ("trian.epochs=3", "--set trian.epochs=3: unknown key"),
        ("epochs", "--set epochs: expected section.key=value"),
        ("train.device=tpu", "--set train.device=tpu: expected auto, cpu or cuda"),
        ("split.seed=3", "--set split.seed=3: split.* are the DVC prepare stage's params"),
    ],
)
def test_bad_set_fails_fast_naming_the_flag(repo: Path, tmp_path: Path, override: str, expected: str) -> None:
    home = tmp_path / "prefect-home"
    rc, _, err, _ = cli("--project", str(repo), "train", "--set", override, cwd=repo, prefect_home=home)
    line = one_line_error(rc, err, home)
    assert expected in line
    assert "params.yaml:" not in line, "a value typed on the command line is not blamed on params.yaml"


def test_bad_params_yaml_names_the_file(repo: Path, tmp_path: Path) -> None:
    (repo / "params.yaml").write_text((repo / "params.yaml").read_text().replace("epochs: 10", "epochs: ten"))
    home = tmp_path / "prefect-home"
    rc, _, err, _ = cli("--project", str(repo), "train", cwd=repo, prefect_home=home)
    assert "params.yaml: train.epochs: expected int" in one_line_error(rc, err, home)


def test_unknown_data_rev_fails_before_prefect(repo: Path, tmp_path: Path) -> None:
    home = tmp_path / "prefect-home"
    rc, _, err, _ = cli("--project", str(repo), "train", "--data-rev", "nosuch", cwd=repo, prefect_home=home)
    assert "--data-rev nosuch: unknown git revision 'nosuch'" in one_line_error(rc, err, home)


def test_data_rev_without_data_dvc(repo: Path, tmp_path: Path) -> None:
    home = tmp_path / "prefect-home"
    rc, _, err, _ = cli("--project", str(repo), "retrain", "--data-rev", "HEAD~1", cwd=repo, prefect_home=home)
    assert "--data-rev HEAD~1: revision 'HEAD~1'" in one_line_error(rc, err, home)
    assert "has no data.dvc" in err


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_shows_the_traceback(repo: Path, tmp_path: Path, where: str) -> None:
    args = ["train", "--set", "train.epochs=abc"]
    args = ["--debug", *args] if where == "before" else [*args, "--debug"]
    rc, _, err, _ = cli("--project", str(repo), *args, cwd=repo, prefect_home=tmp_path / "h")
    assert rc == 2 and "Traceback" in err and "ConfigError" in err
    assert err.strip().splitlines()[-1] == "error: --set train.epochs=abc: expected int, got 'abc'"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["missing.csv", "out.parquet"], "missing.csv: input file not found"),
        ([".", "out.parquet"], "project: input file not found (it is a folder)"),
        (["in.csv", "out.json"], "out.json: cannot tell the format"),
        (["in.csv", "in.csv"], "in.csv: the output must not overwrite the input file"),
        (["notext.csv", "out.csv"], "notext.csv: no column 'text' (columns: ['utterance'])"),
        (["in.csv", "out.csv", "--rev", "nosuch"], "--rev nosuch: unknown git revision 'nosuch'"),
        (["in.csv", "out.csv", "--alias", "nope"], "intent-classifier has no alias 'nope' (no aliases (train"),
    ],
)
def test_predict_fails_fast_before_prefect(repo: Path, tmp_path: Path, args: list[str], expected: str) -> None:
    """Issue 11 item 3 for ``predict``: files, revision and model version are checked before any flow."""
    (repo / "in.csv").write_text("text\nwhere is my order\n")
    (repo / "notext.csv").write_text("utterance\nwhere is my order\n")
    home = tmp_path / "prefect-home"
    paths = [str(repo / a) if a.endswith((".csv", ".parquet", ".json")) or a == "." else a for a in args]
    rc, _, err, _ = cli("--project", str(repo), "predict", *paths, cwd=repo, prefect_home=home)
    assert expected in one_line_error(rc, err, home)
    assert not (repo / "out.parquet").exists() and not (repo / "out.csv").exists()


def test_retries_on_io_but_not_on_a_bad_revision_or_a_failed_gate() -> None:
    from prefect.states import Failed

    from intent_mlops.data.io import DataError
    from intent_mlops.data.validation import ValidationError, ValidationReport
    from intent_mlops.inference.registered import ModelNotFound
    from tasks.batch import fetch_input, resolve_version
    from tasks.data import pull_data, record_validation
    from tasks.retry import retry_on_io_only

    for task in (pull_data, record_validation, resolve_version, fetch_input):
        assert task.retry_condition_fn is retry_on_io_only and task.retries >= 1
    assert retry_on_io_only(resolve_version, None, Failed(data=ModelNotFound("no alias 'x'"))) is False
    failed_gate = ValidationError(ValidationReport(name="raw", source="x.csv", evaluated=13, failures=[]))
    assert retry_on_io_only(pull_data, None, Failed(data=DataError("unknown git revision 'x'"))) is False
    assert retry_on_io_only(record_validation, None, Failed(data=failed_gate)) is False
    assert retry_on_io_only(pull_data, None, Failed(data=OSError("connection reset by peer"))) is True


def test_rollback_refusal_is_one_line(
    repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from flows import cli as cli_module
    from intent_mlops.registry import history

    def refuse(root: Path, to: str | None, reason: str, on_rollback: object = None, **options: object) -> int:
        raise ValueError("intent-classifier: no previous-champion to roll back to; pass --to VERSION")

    monkeypatch.setattr(history, "rollback_command", refuse)
    assert cli_module.main(["--project", str(repo), "rollback"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "error: intent-classifier: no previous-champion to roll back to; pass --to VERSION"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--since", "yesterday"], "--since 'yesterday': expected an ISO time"),
        (["--until", "soon"], "--until 'soon': expected an ISO time"),
        (["--since", "1h", "--until", "2h"], "the window is empty: --since"),
    ],
)
def test_monitor_window_fails_fast_before_prefect(repo: Path, tmp_path: Path, args: list[str], expected: str) -> None:
    home = tmp_path / "prefect-home"
    rc, _, err, _ = cli("--project", str(repo), "monitor", *args, cwd=repo, prefect_home=home)
    assert expected in one_line_error(rc, err, home)


def test_unsafe_model_is_a_user_error() -> None:
    from flows.cli import _is_user_error
    from intent_mlops.model.loading import UnsafeModelError

    assert _is_user_error(UnsafeModelError("model/: refusing pickle-format files"))
    assert not _is_user_error(RuntimeError("a bug"))


def test_an_unreachable_tracking_server_is_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 15 item 3: MLflow giving up on a dead server is a fault of the environment: one line naming
    the server (credentials masked), exit 1, no traceback; any other MLflow error keeps its traceback."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from flows import cli as cli_module

    mlflow.set_tracking_uri("http://worker:s3cret@127.0.0.1:9")
    dead = MlflowException(
        "API request to http://127.0.0.1:9/api/2.0/mlflow/runs/log-batch failed with exception "
        "HTTPConnectionPool(host='127.0.0.1', port=9): Max retries exceeded with url: ... Connection refused"
    )

    def fail(args: object, root: Path) -> int:
        try:
            raise dead
        except MlflowException as exc:
            raise RuntimeError("Finished in state Failed") from exc

    monkeypatch.setattr(cli_module, "_dispatch", fail)
    assert cli_module.main(["--project", str(REPO), "history"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: the MLflow tracking server http://***@127.0.0.1:9 does not answer"), err
    assert "s3cret" not in err and "Traceback" not in err

    # a server that answers, but only 500s (its database stopped): said so, not "does not answer"
    failing = MlflowException(
        "API request to http://127.0.0.1:9/api/2.0/mlflow/runs/log-batch failed with exception "
        "HTTPConnectionPool(host='127.0.0.1', port=9): Max retries exceeded with url: ... "
        "(Caused by ResponseError('too many 500 error responses'))"
    )

    def fail_5xx(args: object, root: Path) -> int:
        raise RuntimeError("Finished in state Failed") from failing

    monkeypatch.setattr(cli_module, "_dispatch", fail_5xx)
    assert cli_module.main(["--project", str(REPO), "history"]) == 1
    err = capsys.readouterr().err.strip()
    assert "keeps answering with server errors (HTTP 5xx" in err and "does not answer" not in err, err
    assert not cli_module._server_errors(RuntimeError("too many 429 error responses")), "a 429 is not a 5xx"

    def bug(args: object, root: Path) -> int:
        raise MlflowException("RESOURCE_DOES_NOT_EXIST: something else")

    monkeypatch.setattr(cli_module, "_dispatch", bug)
    with pytest.raises(MlflowException):
        cli_module.main(["--project", str(REPO), "history"])


@pytest.mark.parametrize(
    ("version", "expected"),
    [("abc", "intent-classifier has no version 'abc'"), ("7", "intent-classifier has no version '7'")],
)
def test_decide_checks_the_version_before_prefect(repo: Path, tmp_path: Path, version: str, expected: str) -> None:
    home = tmp_path / "prefect-home"
    rc, _, err, _ = cli("--project", str(repo), "decide", "--version", version, cwd=repo, prefect_home=home)
    assert expected in one_line_error(rc, err, home)


def test_an_unreadable_champion_lineage_is_one_line_exit_1(
    repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A store fault in the decision step (the lineage could not be read) is one line naming it, not a
    traceback, and exit 1: nothing was decided, the same command is to be rerun."""
    from flows import cli as cli_module
    from intent_mlops.registry.champion import LineageUnreadable

    message = "cannot read lineage/train_text_hashes.txt of champion run abc after 3 tries: OSError: 503"

    def fail(args: object, root: Path) -> int:
        try:
            raise OSError("503 Server Error")
        except OSError as exc:
            raise LineageUnreadable(message) from exc

    monkeypatch.setattr(cli_module, "_dispatch", fail)
    assert cli_module.main(["--project", str(repo), "retrain"]) == 1
    assert capsys.readouterr().err.strip() == f"error: {message}"
