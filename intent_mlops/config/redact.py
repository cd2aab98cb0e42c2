"""Keep credentials out of everything the project writes: params, tags, configs, logs, artifacts.

A tracking URI such as ``postgresql://bob:s3cret@db/mlflow`` is a legitimate config value, but
MLflow params and tags, Prefect logs and printed summaries are readable by everyone with UI
access. Values pass through :func:`redact` before they are written; credentials belong in the
standard environment variables (``MLFLOW_TRACKING_PASSWORD``, ``PREFECT_API_AUTH_STRING``, ...).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

MASK = "***"
_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/@\s]+)@")
_SECRET_KEY = re.compile(r"pass(word|wd)?|secret|token|api[_-]?key|credential|auth|private[_-]?key", re.I)
_SECRET_ASSIGNMENT = re.compile(
    r"(?P<key>\b[\w.-]*(?:pass(?:word|wd)?|secret|token|api[_-]?key|credential|auth_string)[\w.-]*)"
    r"(?P<sep>\s*[=:]\s*)(?P<value>[^\s,;&'\"]+)",
    re.I,
)


def redact(text: str) -> str:
    """Mask URI user info (``scheme://***@host``) and ``key=value`` pairs whose key names a secret."""
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", text)
    return _SECRET_ASSIGNMENT.sub(lambda m: f"{m['key']}{m['sep']}{MASK}", text)


def is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(key.rsplit(".", 1)[-1]))


def redact_mapping(values: Mapping[str, Any]) -> dict[str, str]:
    """``key -> str(value)`` with secret-named keys masked and every value passed through :func:`redact`."""
    return {k: (MASK if is_secret_key(k) and str(v) else redact(str(v))) for k, v in values.items()}
