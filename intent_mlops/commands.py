"""Data commands of the CLI as plain functions (the CLI only parses arguments).

A file is gated before it replaces or extends the tracked data set, so a bad CSV never reaches
``data/``, ``data.dvc`` or the DVC remote.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from intent_mlops import data as data_io
from intent_mlops import versioning
from intent_mlops.config import load_config
from intent_mlops.generate import generate
from intent_mlops.validation import ValidationError, validate_raw


def _gated(root: Path, df: pd.DataFrame, source: str) -> None:
    cfg = load_config(root / "params.yaml")
    rep = validate_raw(df, cfg.validation, source)
    if not rep.success:
        raise ValidationError(rep)


def data_import(root: Path, file: Path, *, append: bool = False, push: bool = True) -> int:
    """``data import`` (replace) / ``data add`` (append): gate, write ``data/``, dvc add, push."""
    df = data_io.read_csv(file)
    data_io.require_columns(df, file)
    incoming = data_io.canonical(df).set_axis(df.index)
    source = str(file)
    if append and (root / versioning.DATA_FILE).exists():
        # existing rows first, exact duplicates of them dropped; gate the result as a whole
        current = data_io.canonical(data_io.read_csv(root / versioning.DATA_FILE))
        incoming = pd.concat([current, incoming], ignore_index=True).drop_duplicates()
        incoming.index = pd.RangeIndex(2, len(incoming) + 2, name="line")
        source = f"{root / versioning.DATA_FILE} + {file}"
    _gated(root, incoming, source)
    md5 = versioning.track(root, incoming, push=push)
    print(f"{versioning.DATA_FILE}: {len(incoming)} rows, tracked as {md5}")
    print("commit the new data version:  git add data.dvc && git commit -m 'data: ...'")
    return 0


def data_generate(root: Path) -> int:
    """Write the default generated corpus (params ``data.*``) as the tracked data set."""
    cfg = load_config(root / "params.yaml").data
    df = generate(cfg.generate_per_intent, cfg.generate_seed, cfg.label_noise, cfg.typo_rate)
    md5 = versioning.track(root, df)
    print(f"generated {len(df)} utterances, {df['label'].nunique()} intents -> {versioning.DATA_FILE} ({md5})")
    return 0


def data_ensure(root: Path) -> int:
    """Make ``data/`` match ``data.dvc``: pull it; if the remote lacks it, regenerate the default set.

    The default set is deterministic, so on a fresh clone regeneration reproduces the committed
    ``data.dvc`` hash exactly and pushes it to the (local) remote.
    """
    recorded = root / versioning.DATA_DVC
    if recorded.exists():
        try:
            versioning.pull(root)
            print(f"{versioning.DATA_FILE} matches {versioning.DATA_DVC} ({versioning.dvc_file_md5(recorded)})")
            return 0
        except Exception as exc:  # DVC raises many types for a missing remote object
            print(f"could not pull {versioning.DATA_DVC} ({type(exc).__name__}); generating the default data set")
        before = versioning.dvc_file_md5(recorded)
    else:
        before = None
    data_generate(root)
    after = versioning.dvc_file_md5(recorded)
    if before is not None and before != after:
        print(
            f"warning: {versioning.DATA_DVC} recorded {before}, which no remote holds; "
            f"it now records the default data set {after}"
        )
    return 0


def prepare(root: Path) -> int:
    """The ``prepare`` stage of ``dvc.yaml`` (reads ``split.*`` from params.yaml only)."""
    cfg = load_config(root / "params.yaml").split
    paths = data_io.prepare_splits(
        root / versioning.DATA_FILE, root / versioning.SPLITS_DIR, cfg.dev_ratio, cfg.test_ratio, cfg.seed
    )
    for name, path in paths.as_dict().items():
        print(f"{name}: {len(data_io.read_csv(path))} rows -> {path.relative_to(root)}")
    return 0
