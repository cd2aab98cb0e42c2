"""``intent-mlops history`` and ``intent-mlops rollback``: the decision record, read and extended.

Both read the registry and its runs only (no local file), so they show the same on any machine
pointed at the same tracking server.
"""

from __future__ import annotations

import getpass
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from intent_mlops.config.params import load_config
from intent_mlops.registry import champion
from intent_mlops.registry.tracking import connect

COLUMNS = (
    ("time", "promotion.time"), ("decision", "promotion.decision"), ("kind", "promotion.kind"),
    ("from", "promotion.champion_version"), ("to", "promotion.challenger_version"), ("data", "data.md5"),
    ("gain", "promotion.gain"), ("ci_low", "promotion.ci_low"), ("ci_high", "promotion.ci_high"),
    ("flow run", "prefect.flow_run_id"), ("reason", "promotion.reason"),
)  # fmt: skip
WIDTHS = {"data.md5": 12, "prefect.flow_run_id": 8}  # hash prefixes
NUMBERS = ("promotion.gain", "promotion.ci_low", "promotion.ci_high")


def history_table(rows: list[dict[str, str]]) -> str:
    """One line per decision, oldest first, in aligned columns; ``to`` is the challenger (or the
    rollback target). The reason, last, is not padded."""
    table = [[name for name, _ in COLUMNS]]
    for row in rows:
        cells = []
        for _, key in COLUMNS:
            value = " ".join((row.get(key, "") or "").split())
            if key in NUMBERS:
                value = _signed(value)
            cells.append(value[: WIDTHS[key]] if key in WIDTHS else value)
        table.append(cells)
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS) - 1)]
    lines = [" | ".join([*(cell.ljust(w) for cell, w in zip(line, widths, strict=False)), line[-1]]) for line in table]
    lines.insert(1, "-+-".join(["-" * w for w in widths] + ["-" * len(COLUMNS[-1][0])]))
    return "\n".join(lines)


def _signed(value: str) -> str:
    try:
        return f"{float(value):+.4f}"
    except ValueError:  # "none", empty, or a hand-set tag: shown as it is
        return value


def print_history(root: Path) -> int:
    cfg = load_config(root / "params.yaml")
    rows = champion.history(connect(cfg.mlflow, root), cfg.mlflow.registered_model)
    print(history_table(rows) if rows else f"no decisions recorded for {cfg.mlflow.registered_model} yet")
    return 0


def rollback_command(
    root: Path,
    to_version: str | None,
    reason: str,
    on_rollback: Callable[[str, dict[str, str]], object] | None = None,
    *,
    force: bool = False,
    lock: AbstractContextManager[object] | None = None,
) -> int:
    """Move ``champion`` back and record it; ``on_rollback(model name, recorded tags)`` runs after the
    record is written (the CLI passes ``flows.promotion.announce_rollback``: a Prefect event; the core
    imports no Prefect). ``lock``: the one promotions take (the CLI passes ``tasks.promotion.promotion_lock``,
    which adds the Prefect global concurrency limit); default the project's file lock alone.
    ``force`` crowns a target below the floor or refused by the policy."""
    cfg = load_config(root / "params.yaml")
    exp_id = connect(cfg.mlflow, root)
    lock = lock or champion.promotion_lock(root / ".intent-mlops" / "promotion.lock")
    tags = champion.rollback(
        cfg.mlflow.registered_model, exp_id, to_version, reason, getpass.getuser(), lock,
        floor=cfg.promotion.min_macro_f1, force=force,
    )  # fmt: skip
    if on_rollback is not None:
        on_rollback(cfg.mlflow.registered_model, tags)
    print(
        f"champion: v{tags['promotion.champion_version']} -> v{tags['promotion.challenger_version']} "
        f"(recorded as a {tags[champion.KIND]} by {tags['promotion.by']}: {tags['promotion.reason']})"
    )
    return 0
