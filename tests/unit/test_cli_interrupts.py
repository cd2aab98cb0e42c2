"""Issue 11 item 4, the parts that need no flow: signal -> exception, exit status, MLflow status."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest
from prefect.exceptions import TerminationSignal

from flows import interrupts
from tasks.training import end_status


@pytest.fixture
def handlers() -> Iterator[None]:
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, h in saved.items():
        signal.signal(s, h)
    interrupts._received = None


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_becomes_keyboard_interrupt_and_exit_status(handlers: None, signum: int, code: int) -> None:
    interrupts.install()
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signum)
    assert interrupts.received() == signum and interrupts.exit_code(signum) == code


def test_stopped_runs_are_killed_failed_runs_failed() -> None:
    assert end_status(KeyboardInterrupt()) == ("KILLED", "stopped by Ctrl-C (SIGINT)")
    assert end_status(TerminationSignal(signal.SIGTERM)) == ("KILLED", "stopped by signal SIGTERM")
    assert end_status(RuntimeError("out of memory")) == ("FAILED", "RuntimeError: out of memory")
