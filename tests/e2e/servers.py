"""Start and stop real servers for the e2e tests: throwaway PostgreSQL databases, long-running
processes in their own process groups, HTTP probes.

Everything here cleans up after itself even when a test fails half-way: databases are dropped
``WITH (FORCE)``, and a process is stopped together with every process it started (a Prefect
worker runs each flow run in a session of its own, so killing the worker's group is not enough).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
ADMIN_DB = "test"
# Variables of the test process that must not leak into a server or a worker: each gets exactly
# the settings its test gives it (the project's own defaults are re-applied by the flow itself).
_PRIVATE_PREFIXES = ("PREFECT_", "MLFLOW_", "DVC_", "HF_", "GX_", "INTENT_MLOPS_")
_PRIVATE_KEYS = {"MPLCONFIGDIR", "TOKENIZERS_PARALLELISM", "PGPASSWORD", "PGDATABASE"}


def postgres_unavailable() -> str | None:
    """Why PostgreSQL cannot be used for throwaway databases (None: it can)."""
    try:
        with socket.create_connection((PG["host"], PG["port"]), timeout=2):
            pass
    except OSError as exc:
        return f"PostgreSQL is not listening on {PG['host']}:{PG['port']} ({exc})"
    try:
        import psycopg2
    except ImportError:
        return "psycopg2 is not installed (the dev extra)"
    try:
        psycopg2.connect(dbname=ADMIN_DB, connect_timeout=5, **PG).close()  # type: ignore[arg-type]
    except Exception as exc:
        return f"cannot connect to PostgreSQL as {PG['user']} (trust auth) to database {ADMIN_DB!r}: {exc}"
    return None


def sqlalchemy_url(db: str, driver: str = "psycopg2") -> str:
    return f"postgresql+{driver}://{PG['user']}@{PG['host']}:{PG['port']}/{db}"


@contextlib.contextmanager
def throwaway_databases(
    roles: Iterable[str], extensions: Mapping[str, Iterable[str]] | None = None
) -> Iterator[dict[str, str]]:
    """``{role: database name}`` of fresh databases, each with its ``extensions``; dropped after."""
    import psycopg2

    tag = uuid.uuid4().hex[:8]
    names = {role: f"intent_mlops_e2e_{tag}_{role}" for role in roles}
    admin = psycopg2.connect(dbname=ADMIN_DB, **PG)  # type: ignore[arg-type]
    admin.autocommit = True
    created: list[str] = []
    try:
        for role, db in names.items():
            with admin.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{db}"')
            created.append(db)
            wanted = list((extensions or {}).get(role, ()))
            if wanted:
                conn = psycopg2.connect(dbname=db, **PG)  # type: ignore[arg-type]
                conn.autocommit = True
                try:
                    with conn.cursor() as cur:
                        for ext in wanted:
                            cur.execute(f"CREATE EXTENSION IF NOT EXISTS {ext}")
                finally:
                    conn.close()
        yield names
    finally:
        try:
            for db in reversed(created):
                with admin.cursor() as cur:
                    cur.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        finally:
            admin.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(**settings: str) -> dict[str, str]:
    """This process's environment without its Prefect/MLflow/DVC/... settings, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_PRIVATE_PREFIXES) and k not in _PRIVATE_KEYS}
    env.update(
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        MLFLOW_DISABLE_TELEMETRY="true",
        DVC_NO_ANALYTICS="1",
        HF_HUB_OFFLINE="1",
        DO_NOT_TRACK="1",
    )
    env.update(settings)
    return env


@dataclass
class Service:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, chars: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def wait_until(self, ready: Callable[[], bool], timeout: float, what: str | None = None) -> None:
        """Poll ``ready`` until true; fail with this service's log when it exits or times out."""
        what = what or self.name
        deadline = time.monotonic() + timeout
        while not ready():
            if not self.alive():
                raise AssertionError(f"{what}: {self.name} exited ({self.proc.returncode}); log:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not ready within {timeout:.0f} s; {self.name} log:\n{self.tail()}")
            time.sleep(1)


def _descendants(pid: int) -> list[int]:
    import psutil

    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []


def stop_tree(pid: int, grace: float = 20) -> None:
    """SIGTERM the process group of ``pid`` and of every descendant (sessions of their own
    included), then SIGKILL whatever is left after ``grace`` seconds."""
    import psutil

    pids = [pid, *_descendants(pid)]
    groups: set[int] = set()
    for p in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            groups.add(os.getpgid(p))
    own = os.getpgid(0)
    groups.discard(own)  # never signal the test runner's own group
    for g in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(g, signal.SIGTERM)
    procs = []
    for p in pids:
        with contextlib.suppress(psutil.Error):
            procs.append(psutil.Process(p))
    _, alive = psutil.wait_procs(procs, timeout=grace)
    for g in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(g, signal.SIGKILL)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()


@contextlib.contextmanager
def service(
    name: str, cmd: list[str], env: Mapping[str, str], logs: Path, cwd: Path | None = None
) -> Iterator[Service]:
    """Run ``cmd`` in a new session with its output in ``logs/<name>.log``; stopped (tree) on exit."""
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{name}.log"
    with open(log, "ab") as fh:
        proc = subprocess.Popen(
            cmd, env=dict(env), cwd=cwd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    try:
        yield Service(name, proc, log)
    finally:
        stop_tree(proc.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)


def run(cmd: list[str], env: Mapping[str, str], cwd: Path | None = None, timeout: float = 300) -> str:
    """Run a command to completion; fail with its output when it fails. Returns its output."""
    try:
        done = subprocess.run(
            cmd, env=dict(env), cwd=cwd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"{' '.join(cmd[:4])} ...: no result within {timeout:.0f} s\n{exc.output!r}") from exc
    out = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(cmd)} exited {done.returncode}:\n{out[-5000:]}"
    return out


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def http(
    url: str, *, method: str = "GET", body: Any = None, authorization: str | None = None, timeout: float = 30
) -> tuple[int, str]:
    """(status, body text) of one request; HTTP errors are returned, not raised."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if authorization:
        req.add_header("Authorization", authorization)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:  # noqa: S310 (loopback URLs built by the tests)
            return int(r.status), r.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode(errors="replace")


def answers(url: str) -> bool:
    try:
        return http(url, timeout=3)[0] == 200
    except OSError:
        return False


def start_detached(cmd: list[str], env: Mapping[str, str], log: Path, ready_url: str, timeout: float = 180) -> Any:
    """Start ``cmd`` in its own process group, output appended to ``log``; return once ``ready_url``
    answers 200. For servers a test kills and starts again on the same port (see :func:`kill_group`).
    A server that does not come up is stopped (tree) before the failure is raised."""
    with open(log, "ab") as fh:
        proc = subprocess.Popen(cmd, env=dict(env), stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while not answers(ready_url):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]
            time.sleep(0.5)
    except BaseException:
        stop_tree(proc.pid, grace=5)
        proc.wait()
        raise
    return proc


def kill_group(proc: subprocess.Popen[Any]) -> None:
    """SIGKILL ``proc``'s process group, as a crash or an OOM kill would end it: the group's other
    members too (uvicorn under ``mlflow server``), even when the leader has already exited."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


class PrivatePostgres:
    """A PostgreSQL cluster of the test's own (``initdb`` in a temporary folder, loopback TCP only,
    trust auth), so a test can stop and restart the database under a server; the shared instance
    on :5432 must stay up for everything else. As root, the cluster runs as the ``postgres`` user,
    because PostgreSQL refuses to run as root. Use it as a context manager: the cluster is stopped
    and its folder removed on exit, and at interpreter exit if the test process is torn down first."""

    def __init__(self, port: int) -> None:
        import shutil
        import tempfile
        import weakref

        self.port = port
        self.bin = Path(shutil.which("pg_ctl") or "pg_ctl").resolve().parent
        self.root = Path(tempfile.mkdtemp(prefix="intent-mlops-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.as_user: list[str] = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self._finalizer = weakref.finalize(self, PrivatePostgres._cleanup, self.bin, self.data, self.root, self.as_user)

    def __enter__(self) -> PrivatePostgres:
        try:
            if self.as_user:
                import shutil

                self.root.chmod(0o755)
                shutil.chown(self.root, "postgres")
            self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def unavailable() -> str | None:
        """Why a private cluster cannot be made here (None: it can)."""
        import pwd
        import shutil

        if not (shutil.which("initdb") and shutil.which("pg_ctl")):
            return "initdb / pg_ctl not on PATH (PostgreSQL server binaries)"
        if os.geteuid() == 0:
            if not shutil.which("runuser"):
                return "running as root without runuser (PostgreSQL refuses to run as root)"
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                return "running as root and there is no postgres user to run the cluster as"
        try:
            import psycopg2  # noqa: F401
        except ImportError:
            return "psycopg2 is not installed (the dev extra)"
        return None

    def _run(self, tool: str, *args: str) -> str:
        done = subprocess.run(
            [*self.as_user, str(self.bin / tool), *args], capture_output=True, text=True, timeout=120,
            stdin=subprocess.DEVNULL, cwd=self.root,
        )  # fmt: skip
        assert done.returncode == 0, f"{tool} {' '.join(args)}: {done.stdout}{done.stderr}"
        return done.stdout

    def start(self) -> None:
        opts = f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", opts, "-w", "-t", "60", "start")

    def stop(self, mode: str = "immediate") -> None:
        """``immediate``: no shutdown checkpoint, clients cut off, as in a crash of the database."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def url(self, db: str, driver: str = "psycopg2") -> str:
        return f"postgresql+{driver}://postgres@127.0.0.1:{self.port}/{db}"

    def create_database(self, db: str) -> None:
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres")
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{db}"')
        finally:
            conn.close()

    def close(self) -> None:
        self._finalizer()

    @staticmethod
    def _cleanup(bin_dir: Path, data: Path, root: Path, as_user: list[str]) -> None:
        import shutil

        if (data / "postmaster.pid").exists():  # running: stop it, whatever state the test left
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                               capture_output=True, timeout=60, cwd=root, stdin=subprocess.DEVNULL)  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)


def checkout_with_code(project: Path) -> Path:
    """The test project as a clone of this repository would be: ``prefect.yaml`` and ``flows/`` beside
    ``params.yaml``, committed, because a worker resolves the deployments' entrypoints there."""
    import shutil

    from tests.conftest import REPO, git

    shutil.copy(REPO / "prefect.yaml", project / "prefect.yaml")
    shutil.copytree(REPO / "flows", project / "flows", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    git(project, "add", "prefect.yaml", "flows")
    git(project, "commit", "-qm", "code")
    return project
