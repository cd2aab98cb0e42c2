"""The two UIs in a real browser (Debian's chromium driven by playwright), with `make serve`'s stack up.

A person's path: the Prefect UI lists `train` and `retrain` (with its schedule), a train flow run
shows its metrics artifact, a retrain that needs approval pauses and a reviewer approves it in the
run's form (the decision, toggle, name and comment end up in the version's tags and card), a run
started from the deployment's form completes, `make demo-monitor` runs against the stack (normal then
drifted traffic, a monitor run after each, the drift event in Prefect) and the `monitor` deployment
runs once: the monitoring experiment charts its signals in MLflow and the deployment's run shows its
`monitoring-report` artifact. The MLflow registry page of `intent-classifier` shows the `champion`
alias and the version's model card.
Screenshots go to `test-output/browser/`.
"""

from __future__ import annotations

import shutil
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from flows import stack
from tests.conftest import REPO

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.browser]
SHOTS = REPO / "test-output" / "browser"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
MONITOR_METRIC = "intent_drift"  # a signal of every monitor run, charted by the MLflow UI


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served(project: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """`make serve` on the test project (its own PREFECT_HOME), torn down whatever happens."""
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium not installed: `make browser` installs it (CI runs it through `make test`)")
    monkeypatch.setenv("PREFECT_HOME", str(project / ".prefect"))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    ports = (_free_port(), _free_port())
    try:
        assert stack.start(project, ports[0], ports[1], timeout=300) == 0
        yield {"prefect": f"http://127.0.0.1:{ports[0]}", "mlflow": f"http://127.0.0.1:{ports[1]}"}
    finally:
        stack.stop(project)


def _run_deployment(name: str, parameters: dict[str, Any], timeout: float = 600) -> Any:
    """Start a deployment run through the Prefect API and wait for its final state (timeout 0: don't)."""
    from prefect.deployments import run_deployment

    # _sync: inside playwright's sync API an event loop runs in this thread, and Prefect would hand back a coroutine
    return run_deployment(name, parameters=parameters, timeout=timeout, _sync=True)  # type: ignore[call-arg]


def _artifact_id(prefect: str, flow_run_id: str, key: str) -> str:
    """The id of a flow run's artifact, through Prefect's REST API."""
    import json
    import urllib.request

    body = json.dumps({"artifacts": {"key": {"any_": [key]}, "flow_run_id": {"any_": [flow_run_id]}}}).encode()
    req = urllib.request.Request(f"{prefect}/api/artifacts/filter", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(req, timeout=30) as r:  # noqa: S310 (the test's own loopback server)
        found = json.loads(r.read())
    assert found, f"no {key} artifact on flow run {flow_run_id}"
    return str(found[0]["id"])


def _wait_for_new_run(before: set[str], timeout: float = 600) -> Any:
    from prefect import get_client

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as c:
        while time.monotonic() < deadline:
            runs = [r for r in c.read_flow_runs() if str(r.id) not in before]
            if runs and runs[0].state and runs[0].state.is_final():
                return runs[0]
            time.sleep(3)
    raise AssertionError("the run started from the form did not finish")


def test_both_uis_in_a_browser(served: dict[str, str], project: Path) -> None:
    # Prefect reads its settings once, when first imported (collection may have imported it already):
    # point this process's client at the stack with a settings context, not the environment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: served["prefect"] + "/api"}):
        _walk_both_uis(served, project)


def _walk_both_uis(served: dict[str, str], project: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    # a champion that is easy to beat (one epoch at a tiny learning rate, crowned by a zero floor)
    weak = ["train.epochs=1", "train.learning_rate=1e-05", "promotion.min_macro_f1=0.0"]
    first = _run_deployment("train-intent-classifier/train", {"overrides": weak})
    assert first.state.is_completed(), first.state
    # then a retrain that needs a person's approval: it trains while the browser looks around, then pauses
    approval = {"force": True, "require_approval": True, "overrides": ["promotion.approval_timeout_seconds=600"]}
    paused = _run_deployment("retrain-intent-classifier/retrain", approval, timeout=0)
    SHOTS.mkdir(parents=True, exist_ok=True)
    args = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"]  # fmt: skip
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(60_000)

        page.goto(f"{served['prefect']}/deployments")
        expect(page.get_by_text("retrain", exact=True).first).to_be_visible()
        expect(page.get_by_text("train", exact=True).first).to_be_visible()
        page.screenshot(path=str(SHOTS / "prefect-deployments.png"), full_page=True)
        page.get_by_text("retrain", exact=True).first.click()
        expect(page.get_by_text("0 3 * * *").or_(page.get_by_text("At 03:00")).first).to_be_visible()
        page.screenshot(path=str(SHOTS / "prefect-retrain-schedule.png"), full_page=True)

        page.goto(f"{served['prefect']}/runs/flow-run/{first.id}")
        page.get_by_role("listitem").filter(has_text="Artifacts").first.click()
        expect(page.get_by_text("training-summary").first).to_be_visible()
        page.get_by_text("training-summary").first.click()
        expect(page.get_by_text("test_accuracy").first).to_be_visible()
        page.screenshot(path=str(SHOTS / "prefect-training-summary.png"), full_page=True)

        _approve_in_the_form(page, served, paused.id)

        from prefect import get_client

        with get_client(sync_client=True) as c:
            before = {str(r.id) for r in c.read_flow_runs()}
            train_id = c.read_deployment_by_name("train-intent-classifier/train").id
        page.goto(f"{served['prefect']}/deployments/deployment/{train_id}")
        page.get_by_role("button", name="Run", exact=True).first.click()
        page.get_by_text("Custom run").first.click()
        expect(page.get_by_text("epochs").first).to_be_visible()
        page.screenshot(path=str(SHOTS / "prefect-run-form.png"), full_page=True)
        page.get_by_role("button", name="Submit").first.click()
        run = _wait_for_new_run(before)
        assert run.state.is_completed(), run.state
        page.goto(f"{served['prefect']}/runs/flow-run/{run.id}")
        page.screenshot(path=str(SHOTS / "prefect-form-run.png"), full_page=True)

        _monitoring_in_both_uis(page, served, project)

        page.goto(f"{served['mlflow']}/#/models/intent-classifier")
        expect(page.get_by_text("champion").first).to_be_visible()
        page.screenshot(path=str(SHOTS / "mlflow-registered-model.png"), full_page=True)
        page.goto(f"{served['mlflow']}/#/models/intent-classifier/versions/2")
        expect(page.get_by_text("approved by rita").first).to_be_visible()
        page.screenshot(path=str(SHOTS / "mlflow-approved-version.png"), full_page=True)
        page.goto(f"{served['mlflow']}/#/models/intent-classifier/versions/1")
        expect(page.get_by_text("Five weakest intents").first).to_be_visible()
        expect(page.get_by_text("champion").first).to_be_visible()
        page.screenshot(path=str(SHOTS / "mlflow-model-card.png"), full_page=True)
        browser.close()


def _approve_in_the_form(page: Any, served: dict[str, str], run_id: Any) -> None:
    """The retrain that needs a person's approval has paused; a reviewer approves it in the UI's form."""
    import mlflow
    from playwright.sync_api import expect
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType

    # the retrain's training subflow decides, so that is the run that pauses (the parent stays Running)
    flt = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=["PAUSED"])))
    deadline = time.monotonic() + 900
    with get_client(sync_client=True) as c:
        while not (paused := c.read_flow_runs(flow_run_filter=flt)):
            state = c.read_flow_run(run_id).state
            assert time.monotonic() < deadline and not (state and state.is_final()), state
            time.sleep(3)
    assert len(paused) == 1, paused
    page.goto(f"{served['prefect']}/runs/flow-run/{paused[0].id}")
    expect(page.get_by_text("Paused").first).to_be_visible()
    page.get_by_role("button", name="Resume").first.click()
    form = page.get_by_role("dialog")
    expect(form.get_by_text("Promote this challenger to champion?")).to_be_visible()
    expect(form.get_by_text("beats champion v1").first).to_be_visible()  # the decision is shown with the form
    form.get_by_role("switch").or_(form.get_by_role("checkbox")).first.click()
    form.locator("textarea").nth(0).fill("rita")  # Reviewer
    form.locator("textarea").nth(1).fill("checked the weakest intents")  # Comment
    page.screenshot(path=str(SHOTS / "prefect-approval-form.png"), full_page=True)
    form.get_by_role("button", name="Submit").click()
    deadline = time.monotonic() + 600
    with get_client(sync_client=True) as c:
        while not (state := c.read_flow_run(run_id).state) or not state.is_final():
            assert time.monotonic() < deadline, state
            time.sleep(3)
    assert state.is_completed(), state
    client = mlflow.MlflowClient(served["mlflow"], served["mlflow"])
    model = client.get_registered_model("intent-classifier")
    assert model.aliases.get("champion") == "2", model.aliases
    tags = client.get_run(str(client.get_model_version("intent-classifier", "2").run_id)).data.tags
    assert tags["promotion.review"] == "approved" and tags["promotion.reviewer"] == "rita", tags
    assert tags["promotion.review_comment"] == "checked the weakest intents"


def _monitoring_in_both_uis(page: Any, served: dict[str, str], project: Path) -> None:
    """`make demo-monitor` on the test project, then the `monitor` deployment; both UIs show the result."""
    import mlflow
    from playwright.sync_api import expect

    from flows import demo_monitor

    started = datetime.now(UTC)
    assert demo_monitor.run(project, rate=10, minutes=0.2, port=_free_port(), prefect_port=0, mlflow_port=0) == 0
    events = demo_monitor.drift_events(served["prefect"] + "/api", started, wait=20.0)
    assert events, "make demo-monitor emitted no drift event"
    run = _run_deployment("monitor-intents/monitor", {"since": "30m"})
    assert run.state.is_completed(), run.state
    assert (run.state.message or "").startswith("drift detected"), run.state.message  # it holds the drifted phase

    client = mlflow.MlflowClient(served["mlflow"], served["mlflow"])
    experiment = client.get_experiment_by_name("intent-classifier-monitoring")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 3, [r.info.run_name for r in runs]  # two of the demo, one of the deployment
    page.goto(f"{served['mlflow']}/#/experiments/{experiment.experiment_id}/runs?compareRunsMode=CHART")
    expect(page.get_by_text(MONITOR_METRIC).first).to_be_visible()
    close = page.locator('[data-component-id="mlflow.assistant.chat_panel.close"]')  # MLflow 3.17's assistant panel
    if close.count():
        close.first.click()
    expect(page.locator(".js-plotly-plot").first).to_be_visible(timeout=60_000)  # the plots drawn, not spinners
    page.wait_for_timeout(2000)
    page.screenshot(path=str(SHOTS / "mlflow-monitoring-charts.png"), full_page=True)

    artifact = _artifact_id(served["prefect"], str(run.id), "monitoring-report")
    page.goto(f"{served['prefect']}/artifacts/artifact/{artifact}")
    expect(page.get_by_text("crossed", exact=False).first).to_be_visible()  # the report's own text, not a card
    page.screenshot(path=str(SHOTS / "prefect-monitoring-report.png"), full_page=True)

    event = events[0]
    page.goto(f"{served['prefect']}/events/event/{str(event['occurred'])[:10]}/{event['id']}")
    expect(page.get_by_text(demo_monitor.DRIFT_EVENT).first).to_be_visible()
    page.screenshot(path=str(SHOTS / "prefect-drift-event.png"), full_page=True)
