"""Process environment for the project's own tools: offline, no telemetry, nothing in $HOME.

Only ``setdefault``: a variable the user exported always wins. Called by the CLI and the flow
entry points, never at import time.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


class NotAProjectError(ValueError):
    """A command that reads or writes the project ran outside one."""


def is_project(folder: Path | str) -> bool:
    folder = Path(folder)
    return (folder / "params.yaml").is_file() or (folder / ".dvc").is_dir()


def project_root(start: Path | str | None = None, *, required: bool = True) -> Path:
    """The nearest folder upward from ``start`` (default: the working directory) holding
    ``params.yaml`` or ``.dvc``.

    None found: :class:`NotAProjectError` (before anything is written), or ``start`` itself
    when ``required`` is false.
    """
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if is_project(folder):
            return folder
    if required:
        raise NotAProjectError(
            f"not inside an intent-mlops project (no params.yaml or .dvc found from {here} upward): "
            "cd into the project or pass --project DIR"
        )
    return here


def apply_defaults(root: Path | str) -> dict[str, str]:
    """Set the embedded defaults for ``root``; returns what is in force."""
    root = Path(root).resolve()
    defaults = {
        "PREFECT_HOME": str(root / ".prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # The ephemeral server migrates a fresh database on first start: Prefect's 20 s limit
        # is too short on a loaded 2-core machine (CI failed on it once).
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "PREFECT_UI_ENABLED": "true",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        # MLflow's client retries a failed request 7 times with backoff factor 2 and a 120 s timeout:
        # about 4 minutes per call, for every call of a flow, when a tracking server is down. These
        # give up in about 20 s; the tasks' own retries cover a server that is only restarting.
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "4",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
        "DVC_NO_ANALYTICS": "1",
        "DVC_SITE_CACHE_DIR": str(root / ".dvc" / "tmp" / "site-cache"),
        "DVC_GLOBAL_CONFIG_DIR": str(root / ".dvc" / "tmp" / "global-config"),
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(root / ".cache" / "huggingface"),
        "TOKENIZERS_PARALLELISM": "false",
        "GX_ANALYTICS_ENABLED": "false",
        "MPLCONFIGDIR": str(root / ".cache" / "matplotlib"),
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
    # DVC runs stage commands (`intent-mlops prepare`) through a shell: make this env's tools visible.
    bindir = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    if bindir not in path.split(os.pathsep):
        os.environ["PATH"] = bindir + (os.pathsep + path if path else "")
    return {k: os.environ[k] for k in defaults}
