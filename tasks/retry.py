"""When a task retries: only on what a second try can fix."""

from __future__ import annotations

from typing import Any

from intent_mlops.data.io import DataError
from intent_mlops.data.validation import ValidationError
from intent_mlops.inference.registered import ModelNotFound

USER_ERRORS = (DataError, ValidationError, ModelNotFound)
"""Verdicts on what the user asked for: retrying cannot change them."""


def retry_on_io_only(task: Any, task_run: Any, state: Any) -> bool:
    """``retry_condition_fn``: retry what a second try can fix (a remote, the network, the tracking
    store), not a verdict on the user's input, which fails at once with its message:
    :class:`~intent_mlops.data.io.DataError` (an unknown revision, a missing or unreadable file, a
    revision without ``data.dvc``), :class:`~intent_mlops.data.validation.ValidationError` or
    :class:`~intent_mlops.inference.registered.ModelNotFound` (no such alias or version)."""
    exc = state.data if isinstance(state.data, BaseException) else None
    if exc is None:
        try:
            exc = state.result(raise_on_failure=False)
        except Exception:  # a result we cannot read: keep the retry policy
            return True
    return not isinstance(exc, USER_ERRORS)
