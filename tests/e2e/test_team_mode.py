"""Team mode (docs/team.md), end to end on this machine, configured only through the tools' settings.

Throwaway PostgreSQL databases hold the Prefect server's state (with ``pg_trgm``), the MLflow
tracking store and the MLflow basic-auth user store. Then, as a team would:

- ``prefect server start`` on PostgreSQL behind ``PREFECT_SERVER_API_AUTH_STRING``;
- ``mlflow server --app-name basic-auth`` on PostgreSQL with proxied artifacts
  (``--artifacts-destination``), its admin password and secret key from the environment; the admin
  creates a user for the worker and one for a reviewer over the REST API;
- ``prefect work-pool create intent-mlops --type process``; ``prefect deploy --all`` from a
  checkout's ``prefect.yaml``; ``prefect worker start --pool intent-mlops`` with
  ``INTENT_MLOPS_PROJECT`` = that checkout and only the standard client variables;
- ``train`` triggered through the Prefect API with a parameter; the worker runs it; the reviewer
  reads the registered version, its tags and description and downloads its artifacts over the
  authenticated MLflow API;
- unauthenticated and wrong-password requests to both servers are refused, MLflow's legacy default
  admin password is refused, and no credential appears in what the run wrote.

The checkout: the ``project`` fixture (git + DVC, small random BERT) plus the repository's
``prefect.yaml`` and ``flows/``, committed, because a worker resolves the entrypoint
``flows/training.py:train_flow`` in the working directory that the pull step
``set_working_directory: {{ $INTENT_MLOPS_PROJECT }}`` chose, and the flow's ``project_dir``
defaults to that directory. In a team the folder is a clone of this repository (code, params.yaml,
data.dvc together), so nothing else is needed; the rest of the code comes from the worker's
environment (``pip install -e`` of the same clone).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import git
from tests.e2e.servers import (
    Service,
    answers,
    basic,
    checkout_with_code,
    clean_env,
    free_port,
    http,
    postgres_unavailable,
    run,
    service,
    sqlalchemy_url,
    throwaway_databases,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.team]

BIN = Path(sys.executable).parent
POOL = "intent-mlops"
TRAIN, RETRAIN = "train-intent-classifier/train", "retrain-intent-classifier/retrain"
MODEL = "intent-classifier"
LEGACY_ADMIN_PASSWORD = "password1234"  # what older MLflow versions shipped in basic_auth.ini (GHSA-gq3w-7jj3-x7gr)
SERVER_START_S = 300  # first start migrates fresh PostgreSQL databases, slow on a busy 2-core machine
FLOW_RUN_S = 600  # ~3 min on two quiet cores; 7+ min seen on a shared, overloaded CI machine
EPOCHS = 5  # the small random BERT reaches dev macro-F1 1.0 at epoch 4 (floor for promotion: 0.5)


@dataclass
class Team:
    root: Path
    prefect_api: str
    prefect_auth: str
    mlflow: str
    admin_password: str
    users: dict[str, str]  # MLflow username -> password
    artifacts: Path
    logs: Path
    stack: contextlib.ExitStack
    services: list[Service] = field(default_factory=list)
    databases: dict[str, str] = field(default_factory=dict)  # role -> PostgreSQL database name

    def prefect_env(self, **more: str) -> dict[str, str]:
        """What a client of the Prefect server sets (a person's laptop, CI, the worker)."""
        home = self.root / f"prefect-client-home-{secrets.token_hex(4)}"
        return clean_env(
            PREFECT_API_URL=self.prefect_api, PREFECT_API_AUTH_STRING=self.prefect_auth, PREFECT_HOME=str(home), **more
        )

    def start(self, name: str, cmd: list[str], env: dict[str, str], cwd: Path | None = None) -> Service:
        svc = self.stack.enter_context(service(name, cmd, env, self.logs, cwd))
        self.services.append(svc)
        return svc


def _require_auth_extra() -> None:
    try:
        import flask_wtf  # noqa: F401  (what mlflow[auth] adds)
    except ImportError:
        pytest.fail('MLflow\'s basic-auth app needs the auth extra: pip install -c constraints.txt "mlflow[auth]"')


def _auth_ini(path: Path, database_uri: str) -> Path:
    """The basic-auth app's settings: user store on PostgreSQL; no password in the file."""
    path.write_text(
        textwrap.dedent(
            f"""\
            [mlflow]
            default_permission = READ
            database_uri = {database_uri}
            admin_username = admin
            authorization_function = mlflow.server.auth:authenticate_request_basic_auth
            auth_cache_ttl_seconds = 60
            """
        )
    )
    path.chmod(0o600)
    return path


@pytest.fixture
def team(tmp_path: Path) -> Iterator[Team]:
    reason = postgres_unavailable()
    if reason:
        pytest.skip(reason)
    _require_auth_extra()
    with contextlib.ExitStack() as stack:
        dbs = stack.enter_context(
            throwaway_databases(
                ["prefect", "mlflow", "mlflow_auth", "predictions"], extensions={"prefect": ["pg_trgm"]}
            )
        )
        t = Team(
            root=tmp_path / "team",
            prefect_api="",
            prefect_auth=f"intent-mlops:{secrets.token_urlsafe(18)}",
            mlflow="",
            admin_password=secrets.token_urlsafe(18),
            users={"intent-worker": secrets.token_urlsafe(18), "reviewer": secrets.token_urlsafe(18)},
            artifacts=tmp_path / "team" / "mlflow-artifacts",
            logs=tmp_path / "team" / "logs",
            stack=stack,
        )
        t.root.mkdir()
        t.databases = dict(dbs)
        pport, mport = free_port(), free_port()
        t.prefect_api, t.mlflow = f"http://127.0.0.1:{pport}/api", f"http://127.0.0.1:{mport}"

        prefect_env = clean_env(
            PREFECT_HOME=str(t.root / "prefect-server-home"),
            PREFECT_SERVER_DATABASE_CONNECTION_URL=sqlalchemy_url(dbs["prefect"], "asyncpg"),
            PREFECT_SERVER_API_AUTH_STRING=t.prefect_auth,
        )
        prefect = t.start(
            "prefect-server",
            [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(pport)],
            prefect_env,
        )
        mlflow_env = clean_env(
            MLFLOW_AUTH_CONFIG_PATH=str(_auth_ini(t.root / "basic_auth.ini", sqlalchemy_url(dbs["mlflow_auth"]))),
            MLFLOW_AUTH_ADMIN_PASSWORD=t.admin_password,
            MLFLOW_FLASK_SERVER_SECRET_KEY=secrets.token_urlsafe(32),
            MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
        )
        mlflow = t.start(
            "mlflow-server",
            [str(BIN / "mlflow"), "server", "--app-name", "basic-auth",
             "--backend-store-uri", sqlalchemy_url(dbs["mlflow"]), "--artifacts-destination", str(t.artifacts),
             "--host", "127.0.0.1", "--port", str(mport), "--workers", "1"],
            mlflow_env,
        )  # fmt: skip
        prefect.wait_until(lambda: answers(f"{t.prefect_api}/health"), SERVER_START_S, "Prefect server on PostgreSQL")
        mlflow.wait_until(lambda: answers(f"{t.mlflow}/health"), SERVER_START_S, "MLflow basic-auth server")
        admin = basic("admin", t.admin_password)
        for user, password in t.users.items():  # an admin creates the team's accounts
            status, body = http(
                f"{t.mlflow}/api/2.0/mlflow/users/create",
                method="POST",
                body={"username": user, "password": password},
                authorization=admin,
            )
            assert status == 200, f"creating MLflow user {user}: {status} {body}"
        yield t


def _assert_refused(status: int, what: str) -> None:
    assert status in (401, 403), f"{what}: expected 401/403, got {status}"


def check_refusals(t: Team) -> None:
    """Both servers refuse requests without, or with wrong, credentials; health probes stay open."""
    flow_runs = f"{t.prefect_api}/flow_runs/filter"
    user = t.prefect_auth.split(":", 1)[0]
    _assert_refused(http(flow_runs, method="POST", body={})[0], "Prefect API without credentials")
    _assert_refused(
        http(flow_runs, method="POST", body={}, authorization=basic(user, "not-the-password"))[0],
        "Prefect API with a wrong auth string",
    )
    assert http(flow_runs, method="POST", body={}, authorization=basic(*t.prefect_auth.split(":", 1)))[0] == 200
    assert http(f"{t.prefect_api}/health")[0] == 200, "health stays open for probes"

    search = f"{t.mlflow}/api/2.0/mlflow/experiments/search?max_results=5"
    _assert_refused(http(search)[0], "MLflow API without credentials")
    _assert_refused(http(search, authorization=basic("admin", "not-the-password-at-all"))[0], "MLflow wrong password")
    _assert_refused(
        http(search, authorization=basic("admin", LEGACY_ADMIN_PASSWORD))[0], "MLflow legacy default admin password"
    )
    _assert_refused(
        http(search, authorization=basic("intent-worker", t.users["reviewer"]))[0], "MLflow another user's password"
    )
    assert http(search, authorization=basic("admin", t.admin_password))[0] == 200
    assert http(search, authorization=basic("reviewer", t.users["reviewer"]))[0] == 200
    # a READ user may not manage accounts
    status, _ = http(
        f"{t.mlflow}/api/2.0/mlflow/users/create",
        method="POST",
        body={"username": "mallory", "password": secrets.token_urlsafe(18)},
        authorization=basic("reviewer", t.users["reviewer"]),
    )
    _assert_refused(status, "MLflow user creation by a non-admin")


async def _trigger_and_wait(t: Team, parameters: dict[str, Any], worker: Service) -> dict[str, Any]:
    """``run_deployment`` through the authenticated API, then poll until the worker finishes it."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        LogFilter,
        LogFilterFlowRunId,
    )
    from prefect.deployments import arun_deployment

    async with get_client() as client:
        train = await client.read_deployment_by_name(TRAIN)
        retrain = await client.read_deployment_by_name(RETRAIN)
        # keep the nightly schedule from firing during the test (it is checked, then paused)
        crons = [getattr(s.schedule, "cron", None) for s in retrain.schedules]
        for s in retrain.schedules:
            await client.update_deployment_schedule(retrain.id, s.id, active=False)
        flow_run = await arun_deployment(TRAIN, parameters=parameters, timeout=0, as_subflow=False)
        deadline = time.monotonic() + FLOW_RUN_S
        while True:
            flow_run = await client.read_flow_run(flow_run.id)
            if flow_run.state is not None and flow_run.state.is_final():
                break
            assert worker.alive(), f"the worker exited; its log:\n{worker.tail()}"
            assert time.monotonic() < deadline, (
                f"flow run {flow_run.name} still {flow_run.state_name} after {FLOW_RUN_S} s; worker log:\n"
                f"{worker.tail()}"
            )
            await asyncio.sleep(3)
        logs = await client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run.id])))
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run.id]))
        )
        variables = await client.read_variables()
        return {
            "train": train,
            "retrain": retrain,
            "retrain_crons": crons,
            "flow_run": flow_run,
            "logs": "\n".join(f"{log.level} {log.message}" for log in logs),
            "artifacts": artifacts,
            "variables": variables,
        }


def test_team_mode_deploy_train_and_review(
    team: Team, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = team  # first: skips before the project and its model are built when PostgreSQL is absent
    check_refusals(t)
    checkout = checkout_with_code(request.getfixturevalue("project"))

    # the team's one-time set-up, from a person's laptop: work pool + deployments (prefect.yaml)
    admin_env = t.prefect_env()
    run([str(BIN / "prefect"), "work-pool", "create", POOL, "--type", "process"], admin_env)
    out = run(
        [str(BIN / "prefect"), "--no-prompt", "deploy", "--all", "--prefect-file", "prefect.yaml"],
        admin_env,
        cwd=checkout,
        timeout=420,
    )
    assert TRAIN in out and RETRAIN in out, out[-3000:]

    # a worker on a machine with the checkout: only standard client settings, credentials from its environment
    worker_env = t.prefect_env(
        INTENT_MLOPS_PROJECT=str(checkout),
        MLFLOW_TRACKING_URI=t.mlflow,
        MLFLOW_TRACKING_USERNAME="intent-worker",
        MLFLOW_TRACKING_PASSWORD=t.users["intent-worker"],
        PREFECT_WORKER_QUERY_SECONDS="3",
    )
    worker = t.start(
        "worker", [str(BIN / "prefect"), "worker", "start", "--pool", POOL, "--name", "e2e-worker"], worker_env
    )

    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: t.prefect_api, PREFECT_API_AUTH_STRING: t.prefect_auth}):
        got = asyncio.run(_trigger_and_wait(t, {"epochs": EPOCHS}, worker))

    flow_run = got["flow_run"]
    assert flow_run.state.is_completed(), f"{flow_run.state}\nlogs:\n{got['logs'][-4000:]}\nworker:\n{worker.tail()}"
    assert flow_run.parameters.get("epochs") == EPOCHS
    # the deployments are prefect.yaml's: pool, schedule, limit, and a pull step resolved by the worker
    train, retrain = got["train"], got["retrain"]
    assert train.work_pool_name == retrain.work_pool_name == POOL
    assert "{{ $INTENT_MLOPS_PROJECT }}" in json.dumps(train.pull_steps), train.pull_steps
    assert got["retrain_crons"] == ["0 3 * * *"]
    assert retrain.global_concurrency_limit is not None and retrain.global_concurrency_limit.limit == 1
    assert retrain.concurrency_options is not None
    assert retrain.concurrency_options.collision_strategy == "CANCEL_NEW"
    assert {a.key for a in got["artifacts"]} >= {"training-summary", "data-validation-raw"}

    # a reviewer reads the registry over the authenticated API
    import mlflow

    from intent_mlops.data.versioning import dvc_file_md5

    monkeypatch.setenv("MLFLOW_TRACKING_URI", t.mlflow)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "reviewer")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", t.users["reviewer"])
    client = mlflow.MlflowClient(tracking_uri=t.mlflow, registry_uri=t.mlflow)
    versions = client.search_model_versions(f"name = '{MODEL}'")
    assert [v.version for v in versions] == ["1"], versions
    mv = client.get_model_version_by_alias(MODEL, "champion")
    assert mv.version == "1"
    assert mv.tags["data.md5"] == dvc_file_md5(checkout / "data.dvc")
    assert mv.tags["git.commit"] == git(checkout, "rev-parse", "HEAD")
    assert mv.tags["promotion.decision"] == "promoted", mv.tags
    assert mv.description and "promot" in mv.description.lower(), mv.description
    model = client.get_registered_model(MODEL)
    assert "champion" in (model.description or ""), model.description
    mlrun = client.get_run(mv.run_id)
    assert mlrun.data.params["train.epochs"] == str(EPOCHS), "the Prefect parameter reached the training"
    assert mlrun.data.tags["prefect.flow_run_id"] == str(flow_run.id)
    assert mlrun.info.artifact_uri.startswith("mlflow-artifacts:"), mlrun.info.artifact_uri
    assert any(t.artifacts.rglob("*.safetensors")), "the weights went through the proxy to --artifacts-destination"
    assert not (checkout / "mlruns" / "mlflow.db").exists(), "nothing went to the embedded store"
    downloaded = Path(mlflow.artifacts.download_artifacts(run_id=mv.run_id, dst_path=str(tmp_path / "download")))
    assert any(downloaded.rglob("*.md")), "the reviewer downloads the run's reports through the proxy"
    _assert_refused(
        http(f"{t.mlflow}/api/2.0/mlflow-artifacts/artifacts?path=")[0], "artifact proxy without credentials"
    )

    # no credential in what the run and the worker wrote
    secrets_ = {"Prefect auth string": t.prefect_auth.split(":", 1)[1], "MLflow admin password": t.admin_password}
    secrets_ |= {f"MLflow password of {u}": p for u, p in t.users.items()}
    written = {
        "MLflow run params": json.dumps(mlrun.data.params),
        "MLflow run tags": json.dumps(mlrun.data.tags),
        "model version tags": json.dumps(mv.tags),
        "model version description": mv.description or "",
        "registered model description": model.description or "",
        "Prefect flow run": flow_run.model_dump_json(),
        "Prefect deployments": train.model_dump_json() + retrain.model_dump_json(),
        "Prefect logs": got["logs"],
        "Prefect artifacts": json.dumps([a.model_dump(mode="json") for a in got["artifacts"]]),
        "Prefect variables": json.dumps([v.model_dump(mode="json") for v in got["variables"]]),
        "worker log": worker.tail(10**7),
    }
    for f in downloaded.rglob("*"):
        if f.is_file() and f.stat().st_size < 5_000_000:
            written[f"artifact {f.relative_to(downloaded)}"] = f.read_text(errors="replace")
    for what, text in written.items():
        for name, value in secrets_.items():
            assert value not in text, f"{name} appears in {what}"

    # two retrains triggered at once through the deployment: one runs, the other is cancelled, with why
    with temporary_settings({PREFECT_API_URL: t.prefect_api, PREFECT_API_AUTH_STRING: t.prefect_auth}):
        runs = asyncio.run(_two_retrains_at_once(worker))
    states = sorted((r.state.type.value, r.state.message or "") for r in runs)
    assert [s for s, _ in states] == ["CANCELLED", "COMPLETED"], states
    assert "concurrency" in states[0][1].lower(), f"the cancelled run says why: {states[0]}"
    assert "skipped" in states[1][1], f"same data and params as the champion: skipped ({states[1]})"

    # the endpoint on a serving machine logs its answers to the team's PostgreSQL table (monitoring.log_url)
    _serve_and_log(t, checkout)

    # canary search: no credential anywhere the team's stores and logs keep, read from the storage itself
    _assert_no_secret_stored(t, checkout, secrets_)


def _serve_and_log(t: Team, checkout: Path) -> None:
    import yaml

    from intent_mlops.monitoring.log import PostgresStore, read_log
    from tests.e2e.servers import stop_tree

    url = f"postgresql://postgres@127.0.0.1:5432/{t.databases['predictions']}"
    params = yaml.safe_load((checkout / "params.yaml").read_text())
    params.setdefault("monitoring", {})["log_url"] = url
    (checkout / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    port = free_port()
    env = clean_env(MLFLOW_TRACKING_URI=t.mlflow, MLFLOW_TRACKING_USERNAME="reviewer",
                    MLFLOW_TRACKING_PASSWORD=t.users["reviewer"])  # fmt: skip
    endpoint = t.start("serve-model", [str(BIN / "intent-mlops"), "--project", str(checkout), "serve-model",
                                       "--port", str(port)], env)  # fmt: skip
    endpoint.wait_until(lambda: answers(f"http://127.0.0.1:{port}/ping"), SERVER_START_S, "serve-model")
    for text in ("where is my order", "reset my password"):
        status, body = http(f"http://127.0.0.1:{port}/invocations", method="POST", body={"inputs": {"text": [text]}})
        assert status == 200, body
    stop_tree(endpoint.proc.pid)  # SIGTERM: the endpoint writes what it holds, then exits
    logged = read_log(PostgresStore(url), datetime.now(UTC) - timedelta(hours=1))
    assert logged["text"].tolist() == ["where is my order", "reset my password"], logged
    assert set(logged["model_version"]) == {f"{MODEL}/1"} and set(logged["source"]) == {"online"}


async def _two_retrains_at_once(worker: Service) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.deployments import arun_deployment

    params = {"overrides": [f"train.epochs={EPOCHS}"]}  # the champion's params: a skip, not a training
    started = [await arun_deployment(RETRAIN, parameters=params, timeout=0, as_subflow=False) for _ in range(2)]
    deadline = time.monotonic() + FLOW_RUN_S
    async with get_client() as client:
        while True:
            runs = [await client.read_flow_run(r.id) for r in started]
            if all(r.state is not None and r.state.is_final() for r in runs):
                return runs
            assert worker.alive() and time.monotonic() < deadline, [r.state for r in runs]
            await asyncio.sleep(2)


def _assert_no_secret_stored(t: Team, checkout: Path, secrets_: dict[str, str]) -> None:
    """Dump each PostgreSQL database (Prefect's, MLflow's, MLflow's users) and read every file the
    servers, the worker and the runs wrote: no password or auth string in plain text."""
    places: dict[str, str] = {}
    for role, db in t.databases.items():
        dump = run(["pg_dump", "--no-owner", "-h", "127.0.0.1", "-U", "postgres", db], clean_env(), timeout=120)
        assert "CREATE TABLE" in dump, dump[-500:]
        places[f"PostgreSQL database of {role}"] = dump
    for folder in (t.artifacts, t.logs, checkout / "mlruns", checkout / ".intent-mlops", t.root):
        for f in folder.rglob("*") if folder.exists() else []:
            if f.is_file() and f.stat().st_size < 20_000_000 and f.name != "basic_auth.ini":
                places[str(f)] = f.read_bytes().decode(errors="replace")
    assert len(places) > 20, sorted(places)
    for where, text in places.items():
        for name, value in secrets_.items():
            assert value not in text, f"{name} appears in {where}"


def test_mlflow_auth_refuses_to_start_with_no_or_the_legacy_admin_password(tmp_path: Path) -> None:
    """MLflow ships no default admin password: a first start without one, or with the old
    ``password1234``, fails with a message naming the setting (nothing to rotate later)."""
    _require_auth_extra()
    for case, password in (("unset", None), ("legacy", LEGACY_ADMIN_PASSWORD)):
        folder = tmp_path / case
        folder.mkdir()
        env = clean_env(
            MLFLOW_AUTH_CONFIG_PATH=str(_auth_ini(folder / "basic_auth.ini", f"sqlite:///{folder / 'auth.db'}")),
            MLFLOW_FLASK_SERVER_SECRET_KEY=secrets.token_urlsafe(32),
            MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
        )
        if password is not None:
            env["MLFLOW_AUTH_ADMIN_PASSWORD"] = password
        port = free_port()
        cmd = [str(BIN / "mlflow"), "server", "--app-name", "basic-auth",
               "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}", "--artifacts-destination", str(folder / "a"),
               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]  # fmt: skip
        with service(f"mlflow-{case}", cmd, env, folder) as svc:
            deadline = time.monotonic() + 180
            while svc.alive() and time.monotonic() < deadline:
                assert not answers(f"http://127.0.0.1:{port}/health"), f"{case}: the server started"
                time.sleep(1)
            assert not svc.alive(), f"{case}: still running after 180 s\n{svc.tail()}"
        assert svc.proc.returncode != 0
        assert "MLFLOW_AUTH_ADMIN_PASSWORD" in svc.tail(), svc.tail()
