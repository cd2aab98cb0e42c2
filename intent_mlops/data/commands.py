"""Data commands of the CLI as plain functions (the CLI only parses arguments).

A file is gated before it replaces or extends the tracked data set, so a bad CSV never reaches
``data/``, ``data.dvc`` or the DVC remote.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import pandas as pd

from intent_mlops.config.params import load_config
from intent_mlops.data import io as data_io
from intent_mlops.data import versioning
from intent_mlops.data.io import DataError, canonical, write_csv
from intent_mlops.data.split import prepare_splits
from intent_mlops.data.validation import ValidationError, gate_import
from intent_mlops.demo.corpus import generate, next_batch


def _gated(root: Path, df: pd.DataFrame, source: str) -> pd.DataFrame:
    """The GX gate of an import; returns the frame to track (labels normalised when configured)."""
    cfg = load_config(root / "params.yaml")
    df, rep, mapping = gate_import(df, cfg.validation, source)
    for old, new in mapping.items():
        print(f"label {old!r} -> {new!r} (validation.normalise_labels)")
    if not rep.success:
        raise ValidationError(rep)
    return df


def data_import(root: Path, file: Path, *, append: bool = False, push: bool = True) -> int:
    """``data import`` (replace) / ``data add`` (append): gate, write ``data/``, dvc add, push.

    Both first check the workspace against ``data.dvc`` (:func:`versioning.check_workspace`): work
    it does not record is refused by name, before anything changes. ``add`` then appends to exactly
    the rows ``data.dvc`` records (pulled, or regenerated on a fresh clone, as ``data ensure`` does),
    never to whatever ``data/`` holds; rows of the batch that repeat existing rows are dropped,
    tracked rows never are (a repeat the tracked data holds on purpose stays).
    """
    df = data_io.read_csv(file)
    data_io.require_columns(df, file)
    incoming = data_io.canonical(df).set_axis(df.index)
    source = str(file)
    tracked = (root / versioning.DATA_DVC).exists()
    if append and not tracked:
        raise DataError(
            f"{root / versioning.DATA_DVC}: not found, so there are no tracked rows to add to; "
            f"start with `intent-mlops data import {file}`"
        )
    if append:
        _ensure(root)
        current = data_io.canonical(data_io.read_csv(root / versioning.DATA_FILE))
        batch = len(incoming)
        incoming = incoming.drop_duplicates()
        incoming = incoming[~_rows_in(incoming, current)]
        if len(incoming) < batch:
            print(f"{file}: {batch - len(incoming)} row(s) already in {versioning.DATA_FILE} or repeated, not added")
        incoming = pd.concat([current, incoming], ignore_index=True)
        incoming.index = pd.RangeIndex(2, len(incoming) + 2, name="line")
        source = f"{root / versioning.DATA_FILE} + {file}"
    elif tracked:
        versioning.check_workspace(root)
    incoming = _gated(root, incoming, source)
    md5 = versioning.track(root, incoming, push=push)
    print(f"{versioning.DATA_FILE}: {len(incoming)} rows, tracked as {md5}")
    print("commit the new data version:  git add data.dvc && git commit -m 'data: ...'")
    return 0


def _rows_in(rows: pd.DataFrame, existing: pd.DataFrame) -> pd.Series:
    """Per row of ``rows``: whether the same (text, label) is in ``existing``."""
    keys = pd.MultiIndex.from_frame(existing[["text", "label"]])
    return pd.Series(pd.MultiIndex.from_frame(rows[["text", "label"]]).isin(keys), index=rows.index)


def _default_corpus(root: Path) -> pd.DataFrame:
    cfg = load_config(root / "params.yaml").data
    return generate(cfg.generate_per_intent, cfg.generate_seed, cfg.label_noise, cfg.typo_rate)


def data_generate(root: Path) -> int:
    """Write the default generated corpus (params ``data.*``) as the tracked data set."""
    df = _default_corpus(root)
    md5 = versioning.track(root, df)
    print(f"generated {len(df)} utterances, {df['label'].nunique()} intents -> {versioning.DATA_FILE} ({md5})")
    return 0


def data_generate_batch(root: Path, batch: int) -> int:
    """Write batch ``batch`` of new labelled rows for the default corpus, ready for ``data add``."""
    cfg = load_config(root / "params.yaml").data
    df = next_batch(batch, seed=cfg.generate_seed, typo_rate=cfg.typo_rate)
    path = write_csv(df, root / ".intent-mlops" / "batches" / f"batch-{batch}.csv")
    new = sorted(set(df["label"]) - set(_default_corpus(root)["label"]))
    print(f"batch {batch}: {len(df)} new utterances, new intent(s) {new} -> {path.relative_to(root)}")
    print(f"add them to the tracked data:  intent-mlops data add {path.relative_to(root)}")
    return 0


def default_corpus_md5(root: Path) -> str:
    """The DVC hash the default corpus has, computed aside (``data/`` is not touched)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = write_csv(canonical(_default_corpus(root)).reset_index(drop=True), Path(tmp) / "intents.csv")
        return versioning.dir_md5({Path(versioning.DATA_FILE).name: path})


def data_ensure(root: Path) -> int:
    """Make ``data/`` match ``data.dvc``: pull it, or, on a fresh clone, regenerate the default set.

    Regeneration happens only when ``data.dvc`` records exactly the default corpus (deterministic
    by seed, so it is reproduced bit for bit) and the pull failed because no cache or remote holds
    it. Any other failure (credentials, an unreachable remote, a corrupt cache, real data that the
    remote lacks) is raised with DVC's message and nothing is changed: demo data never replaces
    real data.
    """
    recorded = root / versioning.DATA_DVC
    if not recorded.exists():
        return data_generate(root)
    _ensure(root)
    return 0


def _ensure(root: Path) -> None:
    """``data/`` made to match an existing ``data.dvc`` (see :func:`data_ensure`); local work is refused."""
    from dvc.logger import set_loggers_level

    recorded = root / versioning.DATA_DVC
    before = versioning.dvc_file_md5(recorded)
    versioning.check_workspace(root)  # unrecorded work stops here, never reaching the regeneration below
    try:
        # DVC's "cache files do not exist" warning is the normal fresh-clone case here; failures are raised
        with set_loggers_level(logging.ERROR):
            versioning.pull(root)
    except Exception as exc:  # DVC raises many types; only one case may regenerate
        if before != default_corpus_md5(root) or not versioning.is_missing_everywhere(root, before):
            raise DataError(f"{recorded}: could not pull {before}: {versioning.dvc_error(exc)}") from None
        data_generate(root)
        after = versioning.dvc_file_md5(recorded)
        if after != before:  # cannot happen unless the generator changed; never leave it silently
            raise DataError(f"{recorded}: regenerated data hashes to {after}, not {before}") from None
        return
    print(f"{versioning.DATA_FILE} matches {versioning.DATA_DVC} ({before})")


def prepare(root: Path) -> int:
    """The ``prepare`` stage of ``dvc.yaml`` (reads ``split.*`` from params.yaml only)."""
    cfg = load_config(root / "params.yaml").split
    paths = prepare_splits(
        root / versioning.DATA_FILE, root / versioning.SPLITS_DIR, cfg.dev_ratio, cfg.test_ratio, cfg.seed
    )
    for name, path in paths.as_dict().items():
        print(f"{name}: {len(data_io.read_csv(path))} rows -> {path.relative_to(root)}")
    return 0
