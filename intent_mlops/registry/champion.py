"""Champion bookkeeping in the MLflow registry: who serves, alias moves under a lock, the decision
record and the history read back from it.

Every decision (promoted, refused, rollback) is recorded the same way: ``promotion.*`` tags on the
model version, a JSON + markdown report on an MLflow run, and the version's description. The
history is read from those runs, never from a local file, so any client of the tracking server
sees the same one. MLflow aliases are last-writer-wins; moves happen under a lock that re-reads
the champion first, so two racing promotions can never both win.
"""

from __future__ import annotations

import contextlib
import glob
import json
import posixpath
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from intent_mlops.config.redact import redact, redact_mapping
from intent_mlops.registry.models import (
    CHALLENGER,
    CHAMPION,
    PREVIOUS_CHAMPION,
    ROLLBACK_MARKS,
    aliases,
    version_tags,
)
from intent_mlops.registry.promotion import Decision

DECISION_TAG = "promotion.decision"
KIND = "promotion.kind"  # comparison, first-model, ..., rollback, manual (see Decision.kind)
UNDECIDED = "undecided"  # approval timed out or the pause failed: decided again on the next run
ROLLED_BACK_AT, ROLLED_BACK_BY, ROLLED_BACK_REASON, ROLLED_BACK_TO_AT = ROLLBACK_MARKS
"""On the version a rollback moved ``champion`` away from (a retrain on its data and params skips) / to."""
DECISION_DIR = "promotion"
KIND_TAG = "intent-mlops.kind"
TRAIN_HASHES = "lineage/train_text_hashes.txt"
SUPERSEDED = "champion_unchanged"  # the one failed criterion of a promotion whose alias move lost a race
ORIGIN_FILE = ".intent-mlops-origin"  # run id + source of a cached model copy


@dataclass(frozen=True)
class Champion:
    """The version behind ``champion`` with the lineage tags it was registered with."""

    version: str
    run_id: str
    tags: dict[str, str]

    @property
    def data_md5(self) -> str:
        return self.tags.get("data.md5", "")

    @property
    def params_md5(self) -> str:
        return self.tags.get("params.md5", "")


def current_champion(name: str) -> Champion | None:
    """The champion, or None when the model or the alias does not exist (other errors propagate)."""
    import mlflow

    version = aliases(name).get(CHAMPION)
    if version is None:
        return None
    mv = mlflow.MlflowClient().get_model_version(name, version)
    return Champion(str(mv.version), str(mv.run_id), dict(mv.tags or {}))


def set_alias(name: str, alias: str, version: str) -> None:
    import mlflow

    mlflow.MlflowClient().set_registered_model_alias(name, alias, version)


class IncompleteModel(RuntimeError):
    """A version's logged model lacks files its tags promise (e.g. ``ood.json``): never served."""


FETCH_LOCK_SECONDS = 900  # a cold fetch of a large model over a slow link


def fetch_model(name: str, version: str, cache: Path) -> Path:
    """Download a version's logged model once (kept under ``cache``); returns its folder.

    :func:`intent_mlops.model.loading.model_folders` finds the weights in it (this project's pyfunc,
    or a version logged in the transformers flavour before it). One fetch per version at a time (a
    file lock in ``cache``); each downloads into a folder of its own and renames it into place, so a
    crash or a second fetch never leaves half a copy under the version's name. A cached copy is used
    only when it came from this version's run and holds every file the version's tags promise
    (:func:`promised_files`), else it is fetched again: a copy without ``ood.json`` would answer with
    no out-of-scope rejection.
    """
    import shutil
    import tempfile

    import mlflow
    from filelock import FileLock

    client = mlflow.MlflowClient()
    mv = client.get_model_version(name, version)
    source = client.get_model_version_download_uri(name, version)
    # the run holds ood.* (the version only the tags a reviewer scans, see models.version_tags)
    promised = promised_files({**dict(client.get_run(str(mv.run_id)).data.tags), **dict(mv.tags or {})})
    # A version number is not an identity: a new store (mlruns/ removed, another tracking server)
    # numbers its versions from 1 again. The copy is reused only if it came from this version's run.
    origin = f"{mv.run_id}\n{source}\n"
    target = cache / f"{name}-v{version}"
    cache.mkdir(parents=True, exist_ok=True)
    with FileLock(str(cache / f".{name}-v{version}.lock"), timeout=FETCH_LOCK_SECONDS):
        if _read(target / ORIGIN_FILE) == origin and not _missing(target, promised):
            return target
        for stale in cache.glob(f".{glob.escape(name)}-v{version}.*partial"):  # crashed fetches; we hold the lock
            shutil.rmtree(stale, ignore_errors=True)
        work = Path(tempfile.mkdtemp(prefix=f".{name}-v{version}.", suffix=".partial", dir=cache))
        try:
            download = work / "download"
            mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(download))
            inner = next((p.parent for p in download.rglob("MLmodel")), download)
            lacking = _missing(inner, promised)
            if lacking:
                raise IncompleteModel(
                    f"{name} version {version}: the logged model lacks {', '.join(lacking)}, which its tags "
                    f"promise ({source}); not served"
                )
            (inner / ORIGIN_FILE).write_text(origin)
            if target.exists():  # an incomplete or foreign copy: moved aside, then removed
                target.rename(work / "replaced")
            inner.rename(target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return target


def promised_files(tags: dict[str, str]) -> list[str]:
    """Files a version's logged model must hold, relative to its weights folder, from its tags: the
    model itself, the out-of-scope rule (``ood.*``) and the variants that serve it (``serving.*``)."""
    from intent_mlops.inference.ood import CALIBRATION_ARRAYS, CALIBRATION_JSON
    from intent_mlops.inference.predictor import ONNX_DIR, ONNX_REPORT, ONNX_VARIANTS, TORCH_BF16, variant_backend

    files = ["config.json"]
    score = tags.get("ood.score", "none")
    if score != "none":
        files.append(CALIBRATION_JSON)
    if score == "mahalanobis":  # class means and precision matrix
        files.append(CALIBRATION_ARRAYS)
    backends = {tags.get("serving.backend", ""), tags.get("serving.batch_backend", "")}
    for variant in (*ONNX_VARIANTS, TORCH_BF16):
        if variant_backend(variant) in backends:
            files.append(f"{ONNX_DIR}/{ONNX_REPORT}")
            if variant in ONNX_VARIANTS:
                files.append(f"{ONNX_DIR}/{ONNX_VARIANTS[variant]}")
    return sorted(set(files))


def _missing(folder: Path, promised: list[str]) -> list[str]:
    """What a local copy of a logged model lacks: ``MLmodel``, the weights, the promised files (in the
    weights folder or the model's root, where the Predictor looks for them too)."""
    from intent_mlops.inference.ood import CALIBRATION_ARRAYS
    from intent_mlops.model.loading import model_folders

    if not (folder / "MLmodel").is_file():
        return ["MLmodel"]
    weights = Path(model_folders(str(folder))[0])
    lacking = [rel for rel in promised if not (weights / rel).is_file() and not (folder / rel).is_file()]
    if not any(p.name != CALIBRATION_ARRAYS for p in weights.glob("*.safetensors")):
        lacking.append("*.safetensors (the weights)")
    return lacking


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def log_train_hashes(run_id: str, hashes: list[str]) -> None:
    """Record which texts a run trained on (hashes only: no customer text leaves the data store)."""
    import mlflow

    mlflow.MlflowClient().log_text(run_id, "\n".join(sorted(set(hashes))) + "\n", TRAIN_HASHES)


LINEAGE_RETRY_SECONDS = 2.0  # waits 2 s, then 4 s: a restarting server or a dropped connection


class LineageUnreadable(RuntimeError):
    """The champion's train-set record could not be read: the decision waits rather than compare on
    rows the champion may have trained on. Retryable: rerun when the tracking store answers."""


def train_hashes(run_id: str, attempts: int = 3) -> set[str] | None:
    """The champion run's train-set text hashes (None for a run that predates this record).

    Only the run's artifact listing without the file means "no record"; any error (an ``OSError``,
    an HTTP 5xx, ...) is retried and then raises :class:`LineageUnreadable`: excluding nothing on a
    failed read would compare the champion on its own training rows.
    """

    for attempt in range(1, attempts + 1):
        try:
            text = _artifact_text(run_id, TRAIN_HASHES)
        except Exception as exc:
            if attempt == attempts:
                what = " ".join(str(exc).split())[:300] or type(exc).__name__
                raise LineageUnreadable(
                    f"cannot read {TRAIN_HASHES} of the champion's run {run_id} after {attempts} tries "
                    f"({type(exc).__name__}: {what}); not deciding on an unknown overlap: rerun when the "
                    "tracking store answers"
                ) from exc
            time.sleep(LINEAGE_RETRY_SECONDS * attempt)
        else:
            return None if text is None else {line for line in text.splitlines() if line}
    raise AssertionError("unreachable")


def recorded_decision(name: str, version: str) -> dict[str, Any] | None:
    """The decision already recorded for a version (a rerun after a crash applies it, never re-decides).

    None only when there is none: no ``promotion.decision`` tag, an ``undecided`` one (decided again),
    or tags without a report (a crash between the two: decided again). Any other error reading the
    report propagates (the caller retries, then fails): deciding a second time on a transient read
    error would write a new verdict over a real one.
    """
    import mlflow

    mv = mlflow.MlflowClient().get_model_version(name, version)
    if (mv.tags or {}).get(DECISION_TAG, UNDECIDED) == UNDECIDED:
        return None
    text = _report_text(str(mv.run_id))
    return None if text is None else dict(json.loads(text))


def _report_text(run_id: str) -> str | None:
    """A run's ``decision.json`` (None: the run has none)."""
    return _artifact_text(run_id, f"{DECISION_DIR}/decision.json")


def _artifact_text(run_id: str, path: str) -> str | None:
    """A run's text artifact; None only when the run's artifact listing lacks it. Every store (local,
    HTTP, S3) answers a listing the same way, while a read of a missing file fails with a
    store-specific error; any error of the listing or the read propagates."""
    import mlflow

    if path not in {f.path for f in mlflow.MlflowClient().list_artifacts(run_id, posixpath.dirname(path))}:
        return None
    return str(mlflow.artifacts.load_text(f"runs:/{run_id}/{path}"))


def record_decision(name: str, run_id: str, decision: Decision, extra: dict[str, str]) -> dict[str, str]:
    """Tags on the version and the run, JSON + markdown on the run, the version's description."""
    import mlflow

    client = mlflow.MlflowClient()
    tags = redact_mapping({**decision.tags(), "promotion.time": _now(), **extra})
    # the report first, the version's decision tag last: the tag is what the skip rules and a rerun
    # read, so a crash in between leaves "not recorded" (decided again), never a verdict without report
    report = decision.to_dict() | {"record": tags}
    client.log_text(run_id, json.dumps(report, indent=2, default=str), f"{DECISION_DIR}/decision.json")
    client.log_text(run_id, redact(decision.markdown()), f"{DECISION_DIR}/decision.md")
    client.update_model_version(name, decision.challenger_version, description=redact(decision.markdown()))
    # a decision made again (``archive_decision`` kept the earlier one) replaces the whole record: an
    # earlier review or supersession must not stick to the new verdict
    stale = [k for k in client.get_run(run_id).data.tags if k.startswith("promotion.") and k not in tags]
    for key in stale:
        client.delete_tag(run_id, key)
    for key, value in tags.items():
        client.set_tag(run_id, key, value)
    client.set_tag(run_id, KIND_TAG, "training")
    on_version = version_tags(tags)  # the headline; the rest is on the run
    mv = client.get_model_version(name, decision.challenger_version)
    for key in [k for k in (mv.tags or {}) if k.startswith("promotion.") and k not in on_version]:
        if key not in ROLLBACK_MARKS:
            client.delete_model_version_tag(name, decision.challenger_version, key)
    for key, value in sorted(on_version.items(), key=lambda kv: kv[0] == DECISION_TAG):
        client.set_model_version_tag(name, decision.challenger_version, key, value)
    return tags


def archive_decision(name: str, version: str) -> str | None:
    """Keep a version's current record (refused, undecided) as a run of its own before it is decided
    again (``intent-mlops decide``, an undecided version on the next retrain): the new record replaces
    the version's tags and report, the history keeps both. Returns the archive run's id (None: no record)."""
    import mlflow

    client = mlflow.MlflowClient()
    mv = client.get_model_version(name, version)
    run = client.get_run(str(mv.run_id))
    tags = {k: v for k, v in run.data.tags.items() if k.startswith("promotion.") or k in ("data.md5", "params.md5")}
    if DECISION_TAG not in tags:
        return None
    tags |= {KIND_TAG: "decision", "promotion.decided_again_at": _now()}
    archive = client.create_run(str(run.info.experiment_id), run_name=f"earlier decision of v{version}", tags=tags)
    text = _report_text(str(mv.run_id))
    if text is not None:
        client.log_text(archive.info.run_id, text, f"{DECISION_DIR}/decision.json")
    client.set_terminated(archive.info.run_id)
    return str(archive.info.run_id)


@contextlib.contextmanager
def promotion_lock(lock_file: Path, timeout_seconds: float = 600) -> Iterator[None]:
    """One alias move at a time on this machine (a file lock in the project folder)."""
    from filelock import FileLock

    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock_file), timeout=timeout_seconds):
        yield


def move_champion(name: str, to_version: str, expected: str | None) -> tuple[bool, str | None]:
    """Crown ``to_version`` if the champion is still ``expected``; call under :func:`promotion_lock`.

    Returns (moved, champion now). Idempotent: a rerun after a crash that already moved the
    alias finds ``to_version`` crowned and reports success without moving anything again. When
    the champion moved meanwhile (a racing promotion, a rollback), nothing moves and the version's
    recorded "promoted" decision is amended to "refused", so the history never shows two winners.
    """
    current = aliases(name).get(CHAMPION)
    if current == to_version:
        return True, current
    if rolled_back(name, to_version):  # a person rolled back from it since its promotion was recorded
        return False, current
    if current != expected:
        _record_superseded(name, to_version, expected, current)
        return False, current
    if current is not None:
        set_alias(name, PREVIOUS_CHAMPION, current)
    set_alias(name, CHAMPION, to_version)
    describe_aliases(name)
    return True, to_version


def rolled_back(name: str, version: str) -> dict[str, str] | None:
    """Who rolled back from ``version``, when and why (None: nobody, or it was crowned again since)."""
    import mlflow

    tags = dict(mlflow.MlflowClient().get_model_version(name, version).tags or {})
    if ROLLED_BACK_AT not in tags:
        return None
    return {"at": tags[ROLLED_BACK_AT], "by": tags.get(ROLLED_BACK_BY, ""), "reason": tags.get(ROLLED_BACK_REASON, "")}


def _record_superseded(name: str, version: str, expected: str | None, current: str | None) -> None:
    """Amend a "promoted" record whose alias move lost: tags, JSON + markdown report, description."""
    import mlflow

    from intent_mlops.registry.promotion import Criterion, decision_from_dict

    client = mlflow.MlflowClient()
    mv = client.get_model_version(name, version)
    run_id = str(mv.run_id or "")
    if (mv.tags or {}).get(DECISION_TAG) != "promoted" or not run_id:
        return
    detail = (
        f"the champion moved from {_v(expected)} to {_v(current)} while version {version} was compared with "
        f"{_v(expected)}: not promoted (a retrain compares it with the current champion)"
    )
    reason = f"refused: {detail}."
    tags = {
        DECISION_TAG: "refused", "promotion.reason": reason, "promotion.superseded_by": current or "none",
        "promotion.superseded_at": _now(),
    }  # fmt: skip
    text = _report_text(run_id)  # None: no report (a hand-set tag): amend the tags alone
    raw = None if text is None else dict(json.loads(text))
    if raw is not None:
        raw["decision"], raw["reason"] = "refused", reason
        raw["criteria"] = [*raw.get("criteria", []), asdict(Criterion(SUPERSEDED, False, None, None, detail))]
        raw["record"] = {**raw.get("record", {}), **tags}
        client.log_text(run_id, json.dumps(raw, indent=2, default=str), f"{DECISION_DIR}/decision.json")
        markdown = redact(decision_from_dict(raw).markdown())
        client.log_text(run_id, markdown, f"{DECISION_DIR}/decision.md")
        client.update_model_version(name, version, description=markdown)
    for key, value in redact_mapping(tags).items():
        client.set_tag(run_id, key, value)
    for key, value in version_tags(redact_mapping(tags)).items():
        client.set_model_version_tag(name, version, key, value)


def describe_aliases(name: str) -> None:
    """The registered model's description names each alias's version (the page opens on it)."""
    import mlflow

    now = aliases(name)
    lines = [
        f"# {name}",
        "",
        "| alias | version | meaning |",
        "|---|---|---|",
        f"| `{CHAMPION}` | {_v(now.get(CHAMPION))} | serves traffic; moved only by a recorded promotion or rollback |",
        f"| `{CHALLENGER}` | {_v(now.get(CHALLENGER))} | the latest trained candidate, promoted or not |",
        f"| `{PREVIOUS_CHAMPION}` | {_v(now.get(PREVIOUS_CHAMPION))} | the champion before the last move "
        "(`intent-mlops rollback` target) |",
        "",
        "Every version's description holds its decision report; `intent-mlops history` lists all decisions.",
    ]
    mlflow.MlflowClient().update_registered_model(name, description="\n".join(lines))


def _v(version: str | None) -> str:
    return f"version {version}" if version else "none"


def _now() -> str:
    """UTC with microseconds: decisions seconds apart (a rollback right after a promotion) keep their order."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _order(row: dict[str, str]) -> tuple[datetime, int, str]:
    """History order: decision time (records with or without fractional seconds), then version."""
    raw = row.get("promotion.time", "")
    when = datetime.min.replace(tzinfo=UTC)
    for fmt in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            when = datetime.strptime(raw, fmt).replace(tzinfo=UTC)
            break
        except ValueError:
            continue
    version = row.get("promotion.challenger_version", "")
    return when, int(version) if version.isdigit() else -1, row.get("run_id", "")


def rollback(
    name: str,
    experiment_id: str,
    to_version: str | None,
    reason: str,
    who: str,
    lock: AbstractContextManager[object],
    *,
    floor: float | None = None,
    force: bool = False,
) -> dict[str, str]:
    """Move ``champion`` back (default: to ``previous-champion``): checked, recorded, then moved, under ``lock``.

    ``lock`` is the one promotions take (the caller builds it: with a Prefect server it also holds the
    global concurrency limit, which the core cannot import). Without ``force`` a target below ``floor``
    (its dev macro-F1) or refused by the policy is refused with the reason. A target that was never
    champion is recorded with kind ``manual``, a former champion with kind ``rollback``. The version
    moved away from is marked (who, when, why): a retrain on its data and params then skips.
    """
    import mlflow

    client = mlflow.MlflowClient()
    with lock:
        now = aliases(name)
        current = now.get(CHAMPION)
        target = to_version or now.get(PREVIOUS_CHAMPION)
        if target is None:
            raise ValueError(f"{name}: no previous-champion to roll back to; pass --to VERSION")
        mv = client.get_model_version(name, target)  # raises if the version does not exist
        if target == current:
            raise ValueError(f"{name}: version {target} is already the champion")
        target_tags = dict(mv.tags or {})
        if not force:
            _check_target(name, target, target_tags, str(mv.run_id or ""), floor)
        was_champion = target_tags.get(DECISION_TAG) == "promoted" or any(
            key in target_tags for key in (ROLLED_BACK_TO_AT, ROLLED_BACK_AT)
        )
        at = _now()
        tags = redact_mapping({
            DECISION_TAG: "rollback", KIND: "rollback" if was_champion else "manual",
            "promotion.reason": reason[:500] or "rollback", "promotion.time": at,
            "promotion.champion_version": current or "none", "promotion.challenger_version": target,
            "promotion.by": who, "data.md5": target_tags.get("data.md5", ""), KIND_TAG: "decision",
        })  # fmt: skip
        run = client.create_run(experiment_id, run_name=f"{tags[KIND]} v{current} -> v{target}", tags=tags)
        client.log_text(run.info.run_id, json.dumps(tags, indent=2), f"{DECISION_DIR}/decision.json")
        client.set_terminated(run.info.run_id)
        if current is not None:
            marks = {ROLLED_BACK_AT: at, ROLLED_BACK_BY: who, ROLLED_BACK_REASON: tags["promotion.reason"]}
            for key, value in redact_mapping(marks).items():
                client.set_model_version_tag(name, current, key, value)
        for key in (ROLLED_BACK_AT, ROLLED_BACK_BY, ROLLED_BACK_REASON):  # crowned again by a person
            if key in target_tags:
                client.delete_model_version_tag(name, target, key)
        client.set_model_version_tag(name, target, ROLLED_BACK_TO_AT, at)
        if current is not None:
            set_alias(name, PREVIOUS_CHAMPION, current)
        set_alias(name, CHAMPION, target)
        describe_aliases(name)
    return tags


def _check_target(name: str, target: str, tags: dict[str, str], run_id: str, floor: float | None) -> None:
    """A rollback target must have been acceptable: not refused, not below the floor (``--force`` skips this)."""
    import mlflow

    if tags.get(DECISION_TAG) == "refused":
        why = tags.get("promotion.reason", "").removeprefix("refused: ").rstrip(".")
        raise ValueError(f"{name}: version {target} was refused ({why}); pass --force to crown it anyway")
    if floor is None or not run_id:
        return
    score = mlflow.MlflowClient().get_run(run_id).data.metrics.get("dev_macro_f1")
    if score is not None and score < floor:
        raise ValueError(
            f"{name}: version {target} has dev macro-F1 {score:.4f}, below the floor promotion.min_macro_f1 "
            f"{floor:.4f}; pass --force to crown it anyway"
        )


def history(experiment_id: str, name: str | None = None) -> list[dict[str, str]]:
    """Every recorded decision, oldest first: the tags of runs that carry ``promotion.decision``.

    With ``name``, a ``champion`` alias that points at a version no recorded decision crowned last
    (moved outside this project, e.g. in MLflow's UI) ends the list as an ``unrecorded`` manual move.
    """
    import mlflow

    runs = mlflow.MlflowClient().search_runs(
        [experiment_id], filter_string=f"tags.`{DECISION_TAG}` LIKE '%'", max_results=5000
    )
    rows = sorted(({**dict(r.data.tags), "run_id": r.info.run_id} for r in runs), key=_order)
    if name is None:
        return rows
    crowned = None
    for row in rows:
        if row.get(DECISION_TAG) in ("promoted", "rollback"):
            crowned = row.get("promotion.challenger_version")
    current = aliases(name).get(CHAMPION)
    if current is not None and current != crowned:
        rows.append({
            DECISION_TAG: "unrecorded", KIND: "manual", "promotion.champion_version": crowned or "none",
            "promotion.challenger_version": current, "promotion.reason": (
                f"champion points at version {current}, but no recorded decision moved it there "
                "(moved outside intent-mlops, e.g. in MLflow's UI)"
            ),
        })  # fmt: skip
    return rows


@dataclass(frozen=True)
class Prior:
    """What the decision history already says about a retrain on this data and these params.

    ``rule``: ``champion`` / ``rolled-back`` / ``refused`` (skip: retraining would repeat it) or
    ``undecided`` (decide ``version`` again, without retraining). ``message`` says which and why.
    """

    rule: str
    version: str
    message: str


def prior_decision(name: str, data_md5: str, params_md5: str, champion: Champion | None) -> Prior | None:
    """The one skip rule of the retrain flow, from the decision history (None: train).

    In order: the champion was trained on this data and params; a version trained on them was rolled
    back from (a person's rollback holds until the data or params change); the newest version trained
    on them was refused against this champion (with no champion: by the floor); it is undecided.
    """
    import mlflow

    if champion is not None and (champion.data_md5, champion.params_md5) == (data_md5, params_md5):
        return Prior(
            "champion", champion.version, f"champion version {champion.version} was trained on this data and params"
        )
    found = mlflow.MlflowClient().search_model_versions(
        f"name='{name}' and tags.`data.md5` = '{data_md5}' and tags.`params.md5` = '{params_md5}'"
    )
    against = champion.version if champion is not None else "none"
    for mv in sorted(found, key=lambda m: -int(m.version)):
        tags, version = dict(mv.tags or {}), str(mv.version)
        if ROLLED_BACK_AT in tags:
            return Prior("rolled-back", version, (
                f"version {version}, trained on this data and params, was rolled back by "
                f"{tags.get(ROLLED_BACK_BY) or 'someone'} at {tags[ROLLED_BACK_AT]}: {tags.get(ROLLED_BACK_REASON, '')}"
            ))  # fmt: skip
        decision = tags.get(DECISION_TAG)
        superseded = decision == "refused" and _failed_criteria(name, version) == SUPERSEDED
        if decision == UNDECIDED or superseded:  # a lost race is no verdict on the model: decided again
            return Prior(UNDECIDED, version, f"version {version}, trained on this data and params, is undecided")
        if decision == "refused" and tags.get("promotion.champion_version") == against:
            on = _failed_criteria(name, version) or tags.get("promotion.reason", "")
            whom = f"champion version {against}" if champion is not None else "the floor (no champion yet)"
            return Prior("refused", version, (
                f"version {version}, trained on this data and params, was refused on {on} against {whom}"
            ))  # fmt: skip
    return None


def _failed_criteria(name: str, version: str) -> str:
    """The failed criteria of a recorded refusal, by name ("" when the report is missing)."""
    raw = recorded_decision(name, version) or {}
    return ", ".join(str(c.get("name")) for c in raw.get("criteria", []) if not c.get("passed"))
