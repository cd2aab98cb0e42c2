"""Ctrl-C and SIGTERM for the commands that run a flow: stop cleanly, leave no process behind.

Without ``PREFECT_API_URL`` Prefect starts a temporary API server as a child of the CLI, in the
CLI's process group: the terminal's Ctrl-C reached that server too and killed it under the running
flow (which then hung retrying the dead API), and a SIGTERM to the CLI alone left it orphaned.
:func:`start_prefect_server` starts that same server first, in its own session (a signal to the
CLI's process group does not reach it), tied to the CLI's life (on Linux it gets SIGTERM when the
CLI dies, even by SIGKILL), with its output in ``$PREFECT_HOME/temporary-server.log``; Prefect
stops it when the CLI exits, after its logs and events are sent.

:func:`install` turns SIGINT and SIGTERM into ``KeyboardInterrupt`` in the main thread, so the
flow's ``except BaseException`` closes the MLflow run and the CLI exits 130 / 143. (During a flow
run Prefect swaps in its own SIGTERM handler; it raises ``TerminationSignal`` and then re-sends
the signal to the handler installed here.) A second signal does not wait for that clean-up.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from types import FrameType
from typing import Any

_received: int | None = None
_server: Any = None


def received() -> int | None:
    """The first SIGINT / SIGTERM this process got since :func:`install` (None: none)."""
    return _received


def exit_code(signum: int) -> int:
    """The shell's convention: 128 + the signal number (Ctrl-C 130, SIGTERM 143)."""
    return 128 + signum


def describe(signum: int) -> str:
    return "Ctrl-C (SIGINT)" if signum == signal.SIGINT else signal.Signals(signum).name


def _handler(signum: int, frame: FrameType | None) -> None:
    global _received
    if _received is not None:  # second signal: the person does not want to wait for the clean-up
        stop_prefect_server()
        print(f"\n{describe(signum)} again: stopped without cleaning up", file=sys.stderr, flush=True)
        os._exit(exit_code(_received))
    _received = signum
    raise KeyboardInterrupt(describe(signum))


def install() -> None:
    """SIGINT and SIGTERM raise ``KeyboardInterrupt`` in the main thread (see :func:`received`)."""
    global _received
    _received = None
    signal.signal(signal.SIGINT, _handler)
    signal.signal(signal.SIGTERM, _handler)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> Any:
    """``preexec_fn`` for the server: SIGTERM when the CLI dies (Linux ``PR_SET_PDEATHSIG``)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)  # loaded here, before the fork: the child only calls it
    parent = os.getpid()

    def preexec() -> None:
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the CLI died between fork and prctl
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


def start_prefect_server(log_file: Path) -> str | None:
    """Start Prefect's temporary API server detached from the CLI's signals; returns its URL.

    Does nothing (None) when ``PREFECT_API_URL`` names a server. Prefect's own ephemeral mode
    then finds this server (it is the same singleton) and stops it at exit.
    """
    global _server
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED, get_current_settings

    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        return None  # before the server module's import: 1.6 s that a client of a running server never needs
    from prefect.server.api.server import SubprocessASGIServer

    class DetachedServer(SubprocessASGIServer):
        """Prefect's ephemeral server, started in its own session with its output in a log file."""

        def _run_uvicorn_command(self) -> subprocess.Popen[Any]:
            import prefect

            log_file.parent.mkdir(parents=True, exist_ok=True)
            command = [
                sys.executable, "-m", "uvicorn", "--app-dir", str(prefect.__module_path__.parent),
                "--factory", "prefect.server.api.server:create_app", "--host", "127.0.0.1",
                "--port", str(self.port), "--log-level", "error", "--lifespan", "on",
            ]  # fmt: skip
            with open(log_file, "ab") as log:
                return subprocess.Popen(
                    command,
                    env={
                        **os.environ,
                        "PREFECT_UI_ENABLED": "0",
                        "PREFECT__SERVER_EPHEMERAL": "1",
                        "PREFECT__SERVER_FINAL": "1",
                        **get_current_settings().to_environment_variables(exclude_unset=True),
                    },
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=_die_with_parent(),
                )

    # Prefect keys its ephemeral server by port, None for "any": taking that slot makes every
    # Prefect client in this process use this server instead of starting its own.
    server = DetachedServer()
    if not isinstance(server, DetachedServer):  # Prefect started one already: use it as it is
        return str(server.api_url) if server.running else None
    server.port = _free_port()
    _server = server
    try:
        server.start()
    except RuntimeError as exc:
        raise RuntimeError(f"{exc} (server log: {log_file})") from None
    return str(server.api_url)


def stop_prefect_server() -> None:
    """Stop the server :func:`start_prefect_server` started (Prefect also does at exit)."""
    server = _server
    if server is not None and server.server_process is not None:
        try:
            server.server_process.terminate()
            server.server_process.wait(timeout=5)
        except Exception:  # noqa: BLE001 - best effort on the way out
            server.server_process.kill()
