"""``intent-mlops history`` and ``intent-mlops rollback``: the decision record, read and extended.

Both read the registry and its runs only (no local file), so they show the same on any machine
pointed at the same tracking server.
"""

from __future__ import annotations

import getpass
from collections.abc import Callable
from pathlib import Path

from intent_mlops.config.params import load_config
from intent_mlops.registry import champion
from intent_mlops.registry.tracking import connect

COLUMNS = (
    ("time", "promotion.time"), ("kind", "promotion.decision"), ("from", "promotion.champion_version"),
    ("to", "promotion.challenger_version"), ("data", "data.md5"), ("gain", "promotion.gain"),
    ("ci_low", "promotion.ci_low"), ("ci_high", "promotion.ci_high"), ("flow run", "prefect.flow_run_id"),
    ("reason", "promotion.reason"),
)  # fmt: skip


def history_table(rows: list[dict[str, str]]) -> str:
    """One line per decision, oldest first; ``to`` is the challenger (or the rollback target)."""
    head = " | ".join(name for name, _ in COLUMNS)
    lines = [head, "-" * len(head)]
    for row in rows:
        cells = [row.get(key, "") or "" for _, key in COLUMNS]
        cells[4] = cells[4][:12]  # data hash prefix
        cells[8] = cells[8][:8]
        lines.append(" | ".join(cells))
    return "\n".join(lines)


def print_history(root: Path) -> int:
    cfg = load_config(root / "params.yaml")
    rows = champion.history(connect(cfg.mlflow, root))
    print(history_table(rows) if rows else f"no decisions recorded for {cfg.mlflow.registered_model} yet")
    return 0


def rollback_command(
    root: Path,
    to_version: str | None,
    reason: str,
    on_rollback: Callable[[str, dict[str, str]], object] | None = None,
) -> int:
    """Move ``champion`` back and record it; ``on_rollback(model name, recorded tags)`` runs after the
    record is written (the CLI passes ``flows.promotion.announce_rollback``: a Prefect event; the core
    imports no Prefect)."""
    cfg = load_config(root / "params.yaml")
    exp_id = connect(cfg.mlflow, root)
    lock = root / ".intent-mlops" / "promotion.lock"
    tags = champion.rollback(cfg.mlflow.registered_model, exp_id, to_version, reason, getpass.getuser(), lock)
    if on_rollback is not None:
        on_rollback(cfg.mlflow.registered_model, tags)
    print(
        f"champion: v{tags['promotion.champion_version']} -> v{tags['promotion.challenger_version']} "
        f"(recorded as a rollback by {tags['promotion.by']}: {tags['promotion.reason']})"
    )
    return 0
