"""``make demo-monitor``'s pieces that need no server: which batch drifts, a stale stack, the endpoint's
port."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from flows import demo_monitor, stack
from intent_mlops.demo.corpus import BATCHES, TEMPLATES


def test_drift_batch_is_the_first_whose_intent_the_champion_never_saw() -> None:
    base = set(TEMPLATES)
    assert demo_monitor.drift_batch(base) == 1
    assert demo_monitor.drift_batch(base | {BATCHES[1].new_intent}) == 2  # after make demo-retrain
    with pytest.raises(demo_monitor.DemoError, match="every corpus batch's new intent"):
        demo_monitor.drift_batch(base | {b.new_intent for b in BATCHES.values()})


def test_a_stack_that_does_not_answer_is_one_line(tmp_path: Path) -> None:
    record = tmp_path / stack.PID_FILE
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"prefect": "http://127.0.0.1:9", "mlflow": "http://127.0.0.1:9", "processes": []}))
    with pytest.raises(demo_monitor.DemoError, match="does not answer: `make stop`"):
        demo_monitor.ensure_stack(tmp_path, 4200, 5000)


def test_a_taken_endpoint_port_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(demo_monitor.DemoError, match=f"port {s.getsockname()[1]} is taken"):
            demo_monitor.start_endpoint(tmp_path, s.getsockname()[1], {})
