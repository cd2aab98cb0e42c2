"""AliasFollower's rules (issue 21): swap only to a loaded and checked version, never retry a broken one
while the alias names it, keep serving when the registry does not answer."""

from __future__ import annotations

from typing import Any

import pytest

from intent_mlops.inference.follow import AliasFollower, Loaded, ServedModel


class _Model:
    def __init__(self, version: str) -> None:
        self.version = version
        self.metadata = None

    def predict(self, data: Any, params: Any = None) -> list[dict[str, Any]]:
        return [{"label": "a", "score": 1.0, "out_of_scope": False, "ood_score": 1.0,
                 "model_version": f"m/{self.version}", "top_k": []}]  # fmt: skip


def _loaded(version: str) -> Loaded:
    return Loaded(_Model(version), version, f"m/{version}")


def _follower(served: ServedModel, alias: dict[str, Any], broken: set[str], calls: list[str],
              failures: list[tuple[str, str]]) -> AliasFollower:  # fmt: skip
    def read() -> str | None:
        if isinstance(alias["v"], Exception):
            raise alias["v"]
        return str(alias["v"])

    def load(version: str) -> Loaded:
        calls.append(version)
        if version in broken:
            raise OSError(f"model.safetensors of {version} missing")
        return _loaded(version)

    return AliasFollower(served, "m", "champion", interval=60, read_alias=read, load=load, check=lambda _: None,
                         on_swap_failed=lambda v, why: failures.append((v, why)))  # fmt: skip


def test_swaps_once_per_move_and_requests_see_the_new_version() -> None:
    served = ServedModel(_loaded("1"))
    alias: dict[str, Any] = {"v": "1"}
    calls: list[str] = []
    f = _follower(served, alias, set(), calls, [])
    assert f.step() is None and calls == [], "unchanged alias: nothing loaded"
    alias["v"] = "2"
    assert f.step() == "2" and served.current.label == "m/2"
    assert served.predict(None)[0]["model_version"] == "m/2"
    assert f.step() is None and calls == ["2"]


def test_a_broken_version_is_refused_once_and_the_old_one_keeps_serving() -> None:
    served = ServedModel(_loaded("1"))
    alias: dict[str, Any] = {"v": "3"}
    calls: list[str] = []
    failures: list[tuple[str, str]] = []
    f = _follower(served, alias, {"3"}, calls, failures)
    assert f.step() is None and f.step() is None
    assert served.current.version == "1" and calls == ["3"], "tried once, not at every poll"
    assert failures == [("3", "OSError: model.safetensors of 3 missing")]
    alias["v"] = "2"  # the alias moves on: followed again
    assert f.step() == "2"


def test_a_registry_that_does_not_answer_changes_nothing(caplog: pytest.LogCaptureFixture) -> None:
    served = ServedModel(_loaded("1"))
    alias: dict[str, Any] = {"v": ConnectionError("connection refused")}
    f = _follower(served, alias, set(), [], [])
    assert f.step() is None and f.step() is None
    assert served.current.version == "1"
    assert sum("cannot read m@champion" in r.getMessage() for r in caplog.records) == 1, "warned once"
    alias["v"] = "2"
    assert f.step() == "2"


def test_a_request_in_flight_finishes_on_the_model_it_started_with() -> None:
    class Slow(_Model):
        def predict(self, data: Any, params: Any = None) -> list[dict[str, Any]]:
            served.swap(_loaded("2"))  # the alias moves while this request runs
            return super().predict(data, params)

    served = ServedModel(Loaded(Slow("1"), "1", "m/1"))
    assert served.predict(None)[0]["model_version"] == "m/1"
    assert served.current.version == "2", "the next request gets the new one"
