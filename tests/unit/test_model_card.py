"""The model card names the data, splits, changed params, metrics, weakest intents and the decision."""

from __future__ import annotations

from intent_mlops.config.params import load_config
from intent_mlops.registry.card import CardInputs, changed_params, model_card


def _inputs(decision: dict | None = None) -> CardInputs:  # type: ignore[type-arg]
    per_intent = {f"intent_{i}": {"f1": i / 10, "precision": 0.5, "recall": 0.5, "support": 10} for i in range(8)}
    return CardInputs(
        name="intent-classifier", version="3", run_id="0123456789abcdef", experiment_id="1",
        tags={"data.md5": "d41d8c.dir", "data.rev": "workspace", "splits.md5": "abc.dir", "git.commit": "f00"},
        rows={"train": 800, "dev": 100, "test": 100},
        metrics={"dev_accuracy": 0.9, "dev_macro_f1": 0.88, "test_accuracy": 0.87, "test_macro_f1": 0.85},
        dev_per_intent=per_intent, decision=decision or {},
    )  # fmt: skip


def test_card_lists_what_a_reviewer_needs() -> None:
    cfg = load_config(None, {"train": {"epochs": 3}, "mlflow": {"tracking_uri": "postgresql://u:pw-123@db/m"}})
    decision = {
        "decision": "refused", "reason": "gain not significant", "champion_version": "2", "gain": 0.01,
        "champion_macro_f1": 0.87, "challenger_macro_f1": 0.88, "ci_low": -0.004, "p_value": 0.2, "test": "bootstrap",
        "n_examples": 100, "excluded_rows": 4,
        "criteria": [{"name": "significance", "passed": False, "detail": "lower bound -0.0040 <= 0"}],
    }  # fmt: skip
    card = model_card(_inputs(decision), cfg)
    expected = ["d41d8c.dir", "abc.dir", "train 800 rows", "0.8800", "0.8500", "`train.epochs` = `3`", "refused",
                "v2", "excluded (champion trained on them): 4", "significance", "#/experiments/1/runs/"]  # fmt: skip
    for text in expected:
        assert text in card, text
    weakest = card.split("Five weakest intents on dev:")[1].split("## Params")[0]
    assert "intent_0" in weakest and "intent_4" in weakest and "intent_5" not in weakest
    assert "pw-123" not in card


def test_changed_params_only_lists_differences() -> None:
    assert changed_params(load_config(None)) == {}
    assert changed_params(load_config(None, {"train": {"seed": 7}})) == {"train.seed": "7"}


def test_card_says_what_kind_of_decision_it_was() -> None:
    """A small-dev or new-label-space decision was not a significance test: the card says so."""
    from intent_mlops.registry.promotion import decide

    cfg = load_config(None)
    y = ["a", "b"] * 7
    champ = ["b", "a", *y[2:]]  # wrong on 2 of 14 rows: no test can pass
    d = decide(y, champ, list(y), cfg.promotion, champion_version="2", challenger_version="3")
    card = model_card(_inputs(d.to_dict()), cfg)
    assert "kind of decision: `small-dev`" in card and "needs at least 20" in card
    old = model_card(_inputs({"decision": "promoted", "reason": "r", "champion_version": None}), cfg)
    assert "kind of decision: `comparison`" in old  # recorded before kinds existed
