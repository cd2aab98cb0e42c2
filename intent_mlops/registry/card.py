"""The model card: what a reviewer needs on a model version's registry page, and nothing else to open.

Data version and row counts, split hashes, params that differ from the defaults, dev and test
metrics, the five weakest intents, the promotion decision with its numbers, and links to the
MLflow run and the Prefect flow run. It is the version's description in the MLflow registry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from intent_mlops.config.params import Config
from intent_mlops.config.redact import redact, redact_mapping
from intent_mlops.registry.promotion import headline


@dataclass
class CardInputs:
    name: str
    version: str
    run_id: str
    experiment_id: str
    tags: dict[str, str]  # lineage: data.md5, data.rev, splits.md5, git.commit, params.md5
    rows: dict[str, int]  # split -> row count
    metrics: dict[str, float]
    dev_per_intent: dict[str, dict[str, float]]  # evaluation report's per_label of the dev split
    decision: dict[str, Any] = field(default_factory=dict)  # promotion.Decision.to_dict()
    flow_run_url: str = ""


def changed_params(cfg: Config) -> dict[str, str]:
    """``section.key -> value`` for every value that differs from the defaults (credentials masked)."""
    default = Config().flat()
    return redact_mapping({k: v for k, v in cfg.flat().items() if default.get(k) != v})


def weakest(per_intent: dict[str, dict[str, float]], n: int = 5) -> list[tuple[str, dict[str, float]]]:
    return sorted(per_intent.items(), key=lambda kv: (kv[1].get("f1", 0.0), kv[0]))[:n]


def model_card(inputs: CardInputs, cfg: Config) -> str:
    t, m = inputs.tags, inputs.metrics
    run_link = f"#/experiments/{inputs.experiment_id}/runs/{inputs.run_id}"
    lines = [
        f"# {inputs.name} version {inputs.version}",
        "",
        f"Trained by run [{inputs.run_id[:8]}]({run_link})"
        + (f", flow run [{t.get('prefect.flow_run_id', '')[:8]}]({inputs.flow_run_url})" if inputs.flow_run_url else "")
        + f", code `{t.get('git.commit', 'unknown')[:12]}`.",
        "",
        "## Data",
        "",
        f"- data version `{t.get('data.md5', '')}` (git revision `{t.get('data.rev', '')}`)",
        f"- splits `{t.get('splits.md5', '')}`: "
        + ", ".join(f"{name} {count} rows" for name, count in inputs.rows.items()),
        "",
        "## Metrics",
        "",
        "| split | accuracy | macro-F1 |",
        "|---|---|---|",
    ]
    for split in ("dev", "test"):
        if f"{split}_accuracy" in m:
            lines.append(f"| {split} | {m[f'{split}_accuracy']:.4f} | {m[f'{split}_macro_f1']:.4f} |")
    lines += [
        "",
        "Five weakest intents on dev:",
        "",
        "| intent | F1 | precision | recall | support |",
        "|---|---|---|---|---|",
    ]
    for intent, row in weakest(inputs.dev_per_intent):
        lines.append(
            f"| {intent} | {row.get('f1', 0):.3f} | {row.get('precision', 0):.3f} | {row.get('recall', 0):.3f} "
            f"| {int(row.get('support', 0))} |"
        )
    lines += ["", "## Serving", "", *_serving_lines(t)]
    changed = changed_params(cfg)
    lines += ["", "## Params that differ from the defaults", ""]
    lines += [f"- `{k}` = `{v}`" for k, v in sorted(changed.items())] or ["- none (all defaults)"]
    lines += ["", "## Promotion", "", _decision_lines(inputs.decision)]
    return redact("\n".join(lines)) + "\n"


def _serving_lines(t: dict[str, str]) -> list[str]:
    """What runs the version and how it decides out of scope (run tags ``serving.*`` and ``ood.*``)."""
    ood = t.get("ood.score", "none")
    rule = f"`{ood}` over {t.get('ood.threshold', '?')} (target {t.get('ood.target', '?')})" if ood != "none" else ""
    online, batch = t.get("serving.backend", "unknown"), t.get("serving.batch_backend", "unknown")
    return [
        f"- online endpoint: `{online}`; batches: `{batch}`",
        f"- out of scope: {rule or '`none` (not calibrated: every text gets an intent)'}",
    ]


def _decision_lines(d: dict[str, Any]) -> str:
    if not d:
        return "No decision recorded yet."
    champ = f"v{d['champion_version']}" if d.get("champion_version") else "none"
    reason = headline(d["decision"], d.get("reason", "")).removeprefix(f"{d['decision']}:").strip()
    out = [f"**{d['decision']}** against champion {champ}: {reason}", ""]
    out.append(f"- kind of decision: `{d.get('kind', 'comparison')}`")
    if d.get("gain") is not None:
        out.append(
            f"- macro-F1 gain {d['gain']:+.4f} (champion {d['champion_macro_f1']:.4f}, challenger "
            f"{d['challenger_macro_f1']:.4f}); one-sided interval lower bound {d['ci_low']:+.4f}, "
            f"p = {d['p_value']:.4f} ({d['test']})"
        )
    out.append(f"- dev rows decided on: {d.get('n_examples')}, excluded (champion trained on them): "
               f"{d.get('excluded_rows')}")  # fmt: skip
    out += ["", "| criterion | passed | detail |", "|---|---|---|"]
    out += [f"| {c['name']} | {'yes' if c['passed'] else 'NO'} | {c['detail']} |" for c in d.get("criteria", [])]
    return "\n".join(out)


def write_card(name: str, version: str, cfg: Config, rows: dict[str, int], flow_run_url: str = "") -> str:
    """Build the card from what the registry and the run already hold, and make it the version's description."""
    import json

    import mlflow

    client = mlflow.MlflowClient()
    mv = client.get_model_version(name, version)
    run = client.get_run(str(mv.run_id))

    def artifact(path: str) -> dict[str, Any]:
        try:
            return dict(json.loads(mlflow.artifacts.load_text(f"runs:/{mv.run_id}/{path}")))
        except Exception:  # not written (yet): the card says so instead of failing the run
            return {}

    inputs = CardInputs(
        name=name, version=version, run_id=str(mv.run_id), experiment_id=str(run.info.experiment_id),
        tags={**dict(run.data.tags), **dict(mv.tags or {})}, rows=rows, metrics=dict(run.data.metrics),
        dev_per_intent=artifact("evaluation/dev_report.json").get("per_label", {}),
        decision=artifact("promotion/decision.json"), flow_run_url=flow_run_url,
    )  # fmt: skip
    card = model_card(inputs, cfg)
    client.update_model_version(name, version, description=card)
    return card
