"""``intent-mlops``: the commands a user types (see ../shared/CONVENTIONS.md).

It lives beside the flows, not in the core package, because ``train`` starts a Prefect flow and
the core stays free of Prefect. What a command needs is checked before anything slow starts: the
project folder, the config with its ``--set`` overrides, the ``--data-rev`` revision. A user
error is one line on stderr and exit status 2 (``--debug`` adds the traceback); Ctrl-C / SIGTERM
during a flow stop it cleanly (exit 130 / 143, see ``flows/interrupts.py``).
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import re
import shlex
import sys
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from intent_mlops.config.environment import apply_defaults, is_project, project_root

DESCRIPTION = (
    "Keep a text intent classifier trained on your labelled data: validate the data, version it, "
    "fine-tune, track every run in MLflow and register the model. Run it inside the project folder "
    "(or pass --project DIR)."
)
EPILOG = """first steps:
  intent-mlops data ensure            get the tracked data set (or generate the default one)
  intent-mlops train                  train, evaluate, register; prints where the results are
  intent-mlops data import FILE.csv   train on your own text,label CSV instead
  intent-mlops params                 every setting of params.yaml, for --set section.key=value

`intent-mlops COMMAND --help` describes one command."""

FLOW_COMMANDS = ("train", "retrain", "predict", "decide", "monitor")
NO_PROJECT_COMMANDS = ("params", "demo")
USER_ERRORS = (
    ("intent_mlops.config.environment", "NotAProjectError"),
    ("intent_mlops.config.params", "ConfigError"),
    ("intent_mlops.data.io", "DataError"),
    ("intent_mlops.data.validation", "ValidationError"),
    ("intent_mlops.model.loading", "UnsafeModelError"),
    ("intent_mlops.registry.models", "ModelNotFound"),
    ("intent_mlops.registry.champion", "IncompleteModel"),
    ("intent_mlops.monitoring.monitor", "WindowError"),
    (__name__, "UserError"),
)
"""Errors that describe what the user asked for, not a bug: one line, exit 2. Looked up by module so
that a fast failure never waits for the import of pandas or torch (an error of a module that was
never imported cannot have been raised)."""

RETRYABLE_ERRORS = (("intent_mlops.registry.champion", "LineageUnreadable"),)
"""Faults of the stores, not of the request nor a bug: one line naming what failed, exit 1 (rerun once
the store answers; nothing was decided, recorded or moved)."""


class UserError(Exception):
    """A wrong argument found by the CLI itself (e.g. rollback to a version that does not exist)."""


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("intent-mlops")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="intent-mlops",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"intent-mlops {_version()}")
    p.add_argument("--project", default=None, metavar="DIR",
                   help="project folder (default: the nearest folder upward holding params.yaml)")  # fmt: skip
    p.add_argument("--debug", action="store_true", help="show tracebacks and every log line")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_, description=help_, parents=[common])

    def run_args(x: argparse.ArgumentParser) -> None:
        x.add_argument("--data-rev", default=None, metavar="REV",
                       help="train on the data that git revision REV records (default: data.dvc as it is)")  # fmt: skip
        x.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a params.yaml value for this run, e.g. --set train.epochs=2")  # fmt: skip

    run_args(add("train", "train on the tracked data, evaluate, register a new model version"))
    r = add("retrain", "champion/challenger: train on new data, promote only a better model")
    run_args(r)
    r.add_argument("--force", action="store_true", help="train even when the decision history says skip")

    add("history", "every champion decision in order: promoted, refused, rollback")
    rb = add("rollback", "move champion back (default: to previous-champion) and record why")
    rb.add_argument("--to", dest="to_version", default=None, metavar="VERSION", help="version to crown")
    rb.add_argument("--reason", default="manual rollback", help="recorded with the decision")
    rb.add_argument("--force", action="store_true",
                    help="crown a version below the floor or refused by the policy anyway")  # fmt: skip
    de = add("decide", "decide an existing version again against the champion (current promotion policy), no training")
    run_args(de)
    de.add_argument("--version", dest="model_version", required=True, metavar="N", help="version number")

    d = add("data", "manage the tracked data set (data/, data.dvc, the DVC remote)")
    dsub = d.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    for name, help_ in (
        ("import", "replace the tracked data set with FILE (a text,label CSV), after validating it"),
        ("add", "append FILE's rows to the tracked data set, after validating the result"),
    ):
        x = dsub.add_parser(name, help=help_, description=help_, parents=[common])
        x.add_argument("file", type=Path)
        x.add_argument("--no-push", action="store_true", help="do not push to the DVC remote")
    g = dsub.add_parser("generate", help="write the default generated data set and track it", parents=[common])
    g.add_argument("--batch", type=int, default=None, metavar="N",
                   help="instead write batch N of new labelled rows (new phrasings, one new intent) "
                   "for `intent-mlops data add`")  # fmt: skip
    dsub.add_parser("ensure", help="make data/ match data.dvc: pull it, or generate the default set", parents=[common])

    def model_args(x: argparse.ArgumentParser) -> None:
        which = x.add_mutually_exclusive_group()
        which.add_argument("--alias", default=None, help="registered model alias (default: champion)")
        which.add_argument("--version", dest="model_version", default=None, metavar="N", help="version number")

    pr = add("predict", "label every row of a CSV/Parquet file (column text) with the champion")
    pr.add_argument("input", help="CSV or Parquet input (with --rev: its path in the project)")
    pr.add_argument("output", help="CSV or Parquet output, written only when complete")
    pr.add_argument("--rev", default=None, metavar="REV", help="read INPUT as git revision REV records it (DVC)")
    model_args(pr)
    sm = add("serve-model", "serve the champion (or --alias) as a REST endpoint (mlflow models serve), following the "
             "alias when it moves and logging every answer; --version N pins one version")  # fmt: skip
    model_args(sm)
    sm.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: loopback only)")
    sm.add_argument("--port", type=int, default=5001, help="port (default 5001, beside the MLflow UI's 5000)")

    mo = add("monitor", "compare a window of the prediction log with the champion's reference: drift report "
             "(MLflow run, Prefect artifact monitoring-report, an event when a threshold is crossed)")  # fmt: skip
    mo.add_argument("--since", default=None, metavar="WHEN",
                    help="window start: ISO time (no zone: local) or a duration before now, e.g. 30m, 2h, 1d "
                    "(default: monitoring.window_hours before --until)")  # fmt: skip
    mo.add_argument("--until", default=None, metavar="WHEN", help="window end, same forms (default: now)")

    dm = add("demo", "demo helpers: generated traffic for a running endpoint")
    dmsub = dm.add_subparsers(dest="demo_command", required=True, metavar="ACTION")
    tr = dmsub.add_parser("traffic", parents=[common],
                          help="send generated utterances to a running endpoint (serve-model) at about RATE/s",
                          description="send generated utterances to a running endpoint (serve-model) at about "
                          "RATE requests/s for MINUTES, then print one line: sent, non-200, answers per model "
                          "version, out-of-scope share")  # fmt: skip
    tr.add_argument("--rate", type=float, default=2.0, help="requests per second (default 2)")
    tr.add_argument("--minutes", type=float, default=1.0, help="how long, fractions allowed (default 1)")
    tr.add_argument("--drift", action="store_true",
                    help="shift the intent mix, add an intent the champion never saw (a corpus batch's)")  # fmt: skip
    tr.add_argument("--batch", type=int, default=1, metavar="N",
                    help="with --drift: whose new intent (default 1; 2 once batch 1 was added)")  # fmt: skip
    tr.add_argument("--intents", default=None, metavar="A,B,...",
                    help="only these demo corpus intents (default: all), e.g. those the champion knows")  # fmt: skip
    tr.add_argument("--url", default="http://127.0.0.1:5001", help="the endpoint (default http://127.0.0.1:5001)")
    tr.add_argument("--seed", type=int, default=0, help="seed of the generated texts (default 0)")

    add("serve", "serve the train, retrain, batch-predict and monitor deployments of prefect.yaml from this machine "
        "(schedules included; Ctrl-C stops)")  # fmt: skip
    add("prepare", "split data/intents.csv into splits/ (the DVC prepare stage)")
    add("params", "list every params.yaml key with its default and meaning")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        root = _root(args)
        apply_defaults(root)
        return _dispatch(args, root)
    except KeyboardInterrupt:  # outside a flow (a flow command handles its own, see _run_flow)
        if args.debug:
            raise
        print("\nstopped by Ctrl-C", file=sys.stderr)
        return 130
    except Exception as exc:
        server = _unreachable_server(exc)
        if server is not None and not args.debug:
            what = "does not answer"
            if _server_errors(exc):
                what = "keeps answering with server errors (HTTP 5xx: it or its database is failing; see its log)"
            print(
                f"error: the MLflow tracking server {server} {what}; the run stays resumable: "
                "bring the server back, then rerun the same command",
                file=sys.stderr,
            )
            return 1
        if _is_one_of(exc, RETRYABLE_ERRORS) and not args.debug:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        if not _is_user_error(exc):
            raise
        if args.debug:
            traceback.print_exc()
        text = str(exc)
        if text in _SHOWN and "\n" in text:  # a failed gate's report, already logged by the flow above
            text = text.splitlines()[0] + " (report above)"
        print(f"error: {text}", file=sys.stderr)
        return 2


def _is_user_error(exc: BaseException) -> bool:
    return _is_one_of(exc, USER_ERRORS)


def _is_one_of(exc: BaseException, errors: tuple[tuple[str, str], ...]) -> bool:
    for module, name in errors:
        cls = getattr(sys.modules.get(module), name, None)
        if cls is not None and isinstance(exc, cls):
            return True
    return False


def _causes(exc: BaseException | None) -> Iterator[BaseException]:
    """``exc`` and what caused it, innermost last (at most 10 links)."""
    seen = 0
    while exc is not None and seen < 10:
        yield exc
        exc, seen = exc.__cause__ or exc.__context__, seen + 1


def _unreachable_server(exc: BaseException | None) -> str | None:
    """The tracking server's URL when ``exc`` (or what caused it) is MLflow giving up on a server that
    refuses or drops connections, or keeps answering 5xx (a fault of the environment, not of this
    run: no traceback)."""
    for link in _causes(exc):
        text = str(link)
        if "API request to" in text and ("Max retries exceeded" in text or "Connection refused" in text):
            from intent_mlops.config.redact import redact

            mlflow = sys.modules.get("mlflow")
            uri = mlflow.get_tracking_uri() if mlflow is not None else os.environ.get("MLFLOW_TRACKING_URI", "")
            return redact(str(uri))
    return None


_SERVER_ERRORS = re.compile(r"too many 5\d\d error responses")  # urllib3's words when 5xx retries run out


def _server_errors(exc: BaseException | None) -> bool:
    """Whether MLflow gave up because the server kept answering 5xx (not because it was unreachable)."""
    return any(_SERVER_ERRORS.search(str(link)) for link in _causes(exc))


def _root(args: argparse.Namespace) -> Path:
    if args.command in NO_PROJECT_COMMANDS:
        return Path(args.project).resolve() if args.project else project_root(required=False)
    if args.project is None:
        return project_root()
    root = Path(args.project).resolve()
    if not is_project(root):
        from intent_mlops.config.environment import NotAProjectError

        raise NotAProjectError(f"--project {args.project}: no params.yaml or .dvc there; pass the project's folder")
    return root


def _dispatch(args: argparse.Namespace, root: Path) -> int:
    if args.command in FLOW_COMMANDS:
        _quiet_console(args.debug)
        return _run_flow(args, root, _preflight(args, root))
    if args.command in ("history", "rollback"):
        if args.command == "rollback" and args.to_version is not None:
            args.to_version = _existing_version(root, args.to_version)
        return _registry_command(args, root)
    if args.command == "serve-model":
        return _serve_model(args, root)
    if args.command == "serve":
        from flows.deployments import serve

        return serve(root)
    if args.command == "demo":
        return _demo_traffic(args)
    if args.command == "params":
        from intent_mlops.config.params import describe

        print(describe())
        return 0
    from intent_mlops.data import commands

    if args.command == "data":
        if args.data_command in ("import", "add"):
            return commands.data_import(root, args.file, append=args.data_command == "add", push=not args.no_push)
        if args.data_command == "generate":
            if args.batch is not None:
                return commands.data_generate_batch(root, args.batch)
            return commands.data_generate(root)
        return commands.data_ensure(root)
    if args.command == "prepare":
        return commands.prepare(root)
    raise AssertionError(args.command)


def _serve_model(args: argparse.Namespace, root: Path) -> int:
    """``serve-model``: see ``flows/serving.py`` (MLflow's scoring app; follows the alias unless --version)."""
    from flows.serving import serve_model

    _quiet_console(args.debug)
    return serve_model(args, root)


def _demo_traffic(args: argparse.Namespace) -> int:
    """``demo traffic``: paced requests to a running endpoint, then the one-line summary."""
    from intent_mlops.demo.traffic import TrafficError, send

    kind = f"drifted traffic (corpus batch {args.batch})" if args.drift else "traffic"
    print(f"sending {kind} to {args.url} at about {args.rate:g}/s for {args.minutes:g} min", flush=True)
    try:
        intents = [x.strip() for x in args.intents.split(",") if x.strip()] if args.intents else None
        summary = send(args.url, args.rate, args.minutes, args.drift, args.seed, args.batch, intents)
    except TrafficError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(summary.line())
    return 0 if summary.non_200 == summary.errors == 0 else 1


def _existing_version(root: Path, version: str) -> str:
    """``--to VERSION`` checked against the registry before anything moves (see ``existing_version``)."""
    from intent_mlops.config.params import load_run_config
    from intent_mlops.registry.models import existing_version
    from intent_mlops.registry.tracking import connect

    cfg = load_run_config(root)
    connect(cfg.mlflow, root)
    return existing_version(cfg.mlflow.registered_model, version)


def _registry_command(args: argparse.Namespace, root: Path) -> int:
    from mlflow.exceptions import MlflowException

    from intent_mlops.registry import history as decisions

    try:
        if args.command == "history":
            return decisions.print_history(root)
        from flows.promotion import announce_rollback
        from tasks.promotion import promotion_lock

        return decisions.rollback_command(
            root, args.to_version, args.reason, on_rollback=announce_rollback, force=args.force,
            lock=promotion_lock(root),
        )  # fmt: skip
    except ValueError as exc:  # rollback's own refusals: nothing to roll back to, already champion
        raise UserError(str(exc)) from exc
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        raise UserError(" ".join(exc.message.split())) from exc


@dataclass(frozen=True)
class Plan:
    """What a flow command was checked to need before anything slow started."""

    cfg: Any
    data_rev: str | None
    commit: str | None  # the commit --data-rev / --rev names (None: the workspace)
    model: Any = None  # predict: the registered version the alias or number resolved to


def _preflight(args: argparse.Namespace, root: Path) -> Plan:
    """Config, overrides, revision (and for ``predict`` the files and the model version), checked in
    seconds: no Prefect, no DVC checkout yet."""
    from intent_mlops.config.params import load_run_config

    if args.command == "predict":
        return _preflight_predict(args, root, load_run_config(root))
    if args.command == "monitor":
        from intent_mlops.monitoring.monitor import monitoring_window

        cfg = load_run_config(root)
        monitoring_window(args.since, args.until, cfg.monitoring.window_hours)  # a bad --since fails in seconds
        return Plan(cfg=cfg, data_rev=None, commit=None)
    cfg = load_run_config(root, args.overrides)
    model = None
    if args.command == "decide":
        from intent_mlops.inference.registered import resolve

        version = _existing_version(root, str(args.model_version))
        model = resolve(cfg.mlflow.registered_model, None, version)
    commit = None
    if args.data_rev not in (None, "", "workspace"):
        commit = _resolve_revision(root, args.data_rev, "--data-rev")
    elif not (root / "data.dvc").exists():
        from intent_mlops.data.io import DataError

        raise DataError(
            f"{root / 'data.dvc'}: not found: `intent-mlops data ensure` gets the default data set, "
            "`intent-mlops data import FILE` tracks yours"
        )
    return Plan(cfg=cfg, data_rev=args.data_rev, commit=commit, model=model)


def _resolve_revision(root: Path, rev: str, option: str) -> str:
    from intent_mlops.data import versioning
    from intent_mlops.data.io import DataError

    try:
        return versioning.resolve_revision(root, rev)
    except DataError as exc:
        raise DataError(f"{option} {rev}: {exc}") from None


def _preflight_predict(args: argparse.Namespace, root: Path, cfg: Any) -> Plan:
    """``predict``: formats, the input file (or its revision) and the model version, before Prefect."""
    from intent_mlops.data.io import DataError
    from intent_mlops.inference.batch import check_input, file_format
    from intent_mlops.inference.registered import resolve
    from intent_mlops.registry.tracking import connect

    commit = _resolve_revision(root, args.rev, "--rev") if args.rev else None
    if commit is None:
        source = Path(args.input)
        if not source.is_file():
            raise DataError(f"{args.input}: input file not found" + (" (it is a folder)" if source.is_dir() else ""))
        if source.resolve() == Path(args.output).resolve():
            raise DataError(f"{args.output}: the output must not overwrite the input file")
        check_input(source)
    file_format(args.input)
    file_format(args.output)
    connect(cfg.mlflow, root)
    model = resolve(cfg.mlflow.registered_model, args.alias, args.model_version)
    return Plan(cfg=cfg, data_rev=args.rev, commit=commit, model=model)


def _quiet_console(debug: bool) -> None:
    """Progress bars, the epoch lines and the summary on the console; the rest in the logs.

    Set before Prefect, MLflow and transformers are imported. The Prefect flow run keeps every log
    line at INFO (its API handler is not the console's), the MLflow run keeps params, curves and
    reports. ``--debug`` leaves every library's console output as it was.
    """
    if debug:
        return
    quiet = {
        "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "WARNING",  # console only: API logs stay at INFO
        "MLFLOW_LOGGING_LEVEL": "WARNING",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",  # fetching the champion to compare with it
        "TRANSFORMERS_VERBOSITY": "error",  # the "LOAD REPORT ... MISSING" table of every new head
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # "Loading weights" / "Writing model shards" bars
    }
    for key, value in quiet.items():
        os.environ.setdefault(key, value)
    # expected for a model logged from a local folder: no hub model card, no licence on record
    logging.getLogger("mlflow.transformers").setLevel(logging.ERROR)
    import dvc.logger  # noqa: F401  (its import installs DVC's console handlers at INFO)

    for name in ("dvc", "dvc_objects", "dvc_data"):
        logging.getLogger(name).setLevel(logging.WARNING)
        logging.getLogger(name).propagate = False  # printed once, by DVC's own handler


STOP_MESSAGES = ("aborted by an interrupt signal", "aborted by a termination signal", "TerminationSignal")
"""How Prefect's crash reports for Ctrl-C / SIGTERM read (during a flow run Prefect's own SIGTERM
handler runs first, so :func:`flows.interrupts.received` does not know yet)."""
FINAL_STATE = "Finished in state "
"""Prefect's closing line of each task and flow run: the CLI reports the outcome itself."""


_SHOWN: set[str] = set()
"""Error messages the console showed during the flow (the CLI does not print them a second time)."""


class _HideUserErrorTracebacks:
    """Console filter: Prefect logs a failed task/flow with its traceback; for a user error the CLI
    prints the one line that matters (the flow run in the UI keeps the whole record)."""

    def filter(self, record: Any) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and (_is_user_error(exc) or _unreachable_server(exc) is not None):
            return False
        from flows import interrupts

        # after Ctrl-C / SIGTERM Prefect reports crashed runs; the CLI says what happened instead
        if interrupts.received() is not None or _is_stop(exc):
            return False
        message = record.getMessage()
        if message.startswith(FINAL_STATE) or any(words in message for words in STOP_MESSAGES):
            return False
        if record.levelno >= logging.ERROR:
            _SHOWN.add(message)
        return True


class _PlainLines(logging.Formatter):
    """Console format: ``warning: MESSAGE`` / ``error: MESSAGE``, like the CLI's own lines, instead of
    Prefect's ``12:00:00.000 | WARNING | Task run 'open-mlflow-run-abc' - MESSAGE`` among the summary
    (the flow run keeps Prefect's record with the task and the time)."""

    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {super().format(record)}"


def _filter_console() -> None:
    from prefect.logging.handlers import PrefectConsoleHandler

    for logger in (logging.getLogger(), logging.getLogger("prefect")):
        for handler in logger.handlers:
            if isinstance(handler, PrefectConsoleHandler):
                handler.addFilter(_HideUserErrorTracebacks())
                handler.setFormatter(_PlainLines("%(message)s"))


def _is_stop(exc: BaseException | None) -> bool:
    if isinstance(exc, KeyboardInterrupt):
        return True
    exceptions = sys.modules.get("prefect.exceptions")
    return exceptions is not None and isinstance(exc, exceptions.TerminationSignal)


def _run_flow(args: argparse.Namespace, root: Path, plan: Plan) -> int:
    from flows import interrupts

    interrupts.install()
    try:
        data = f"commit {plan.commit[:10]} ({plan.data_rev})" if plan.commit else "the workspace (data.dvc)"
        if args.command == "predict":
            at = f" at {plan.data_rev}" if plan.commit else ""
            print(f"intent-mlops predict: {args.input}{at} with {plan.model.label}; full logs in the Prefect flow run")
        elif args.command == "monitor":
            print("intent-mlops monitor: the prediction log against the champion's reference; full logs in the "
                  "Prefect flow run")  # fmt: skip
        else:
            print(f"intent-mlops {args.command}: data of {data}; full logs in the Prefect flow run and the MLflow run")
        run = _flow_runner(args, root)  # imports Prefect, which sets up its console handler
        if not args.debug:
            _filter_console()
        interrupts.start_prefect_server(Path(os.environ["PREFECT_HOME"]) / "temporary-server.log")
        return run()
    except BaseException as exc:
        if not _is_stop(exc):
            raise
        signum = interrupts.received() or int(getattr(exc, "signal", 0) or 2)
        _report_stop(args, root, plan, signum)
        return interrupts.exit_code(signum)
    finally:
        if plan.commit:
            from intent_mlops.data import versioning

            versioning.remove_worktree(root, plan.commit)
        # A flow leaves a heap of millions of objects (Prefect, MLflow, GX, torch); the interpreter's
        # last garbage collection over it took 10-40 s on a busy 2-core machine after the summary
        # or the resume hint was printed. Nothing here needs collecting any more.
        gc.freeze()


def _flow_runner(args: argparse.Namespace, root: Path) -> Callable[[], int]:
    if args.command == "predict":
        from flows.batch import run_batch

        return lambda: run_batch(root, args)
    if args.command == "train":
        from flows.training import run_training

        return lambda: run_training(root, args.data_rev, args.overrides)
    if args.command == "decide":
        from flows.promotion import run_decide

        return lambda: run_decide(root, args.model_version, args.data_rev, args.overrides)
    if args.command == "monitor":
        from flows.monitoring import run_monitor

        return lambda: run_monitor(root, args.since, args.until)
    from flows.retraining import run_retraining

    return lambda: run_retraining(root, args.data_rev, args.force, args.overrides)


def _report_stop(args: argparse.Namespace, root: Path, plan: Plan, signum: int) -> None:
    """After Ctrl-C / SIGTERM: mark the MLflow run KILLED with the reason, say how to resume."""
    from flows import interrupts

    what = interrupts.describe(signum)
    if args.command == "predict":
        print(f"\nstopped by {what}: {args.output} not written (an earlier file there is unchanged)", file=sys.stderr)
        return
    if args.command == "decide":
        print(
            f"\nstopped by {what}: the champion moves only after a recorded decision; rerun to decide", file=sys.stderr
        )
        return
    if args.command == "monitor":
        print(f"\nstopped by {what}: nothing recorded for this window; rerun to monitor it", file=sys.stderr)
        return
    command = shlex.join(["intent-mlops", *sys.argv[1:]]) if sys.argv[1:] else "the same command"
    run_id, step = None, None
    try:
        run_id, step = _stop_run(root, plan, what)
    except Exception as exc:  # noqa: BLE001 - say what is known; the run stays resumable anyway
        print(f"(could not update the MLflow run: {' '.join(str(exc).split())[:200]})", file=sys.stderr)
    print(file=sys.stderr)
    if run_id is None:
        print(f"stopped by {what} before training started; nothing to resume", file=sys.stderr)
        return
    where = f"it resumes from step {step}" if step is not None else "no checkpoint yet, it trains from the start"
    print(f"stopped by {what}: MLflow run {run_id} marked KILLED", file=sys.stderr)
    print(f"rerun the same command, {where}:\n  {command}", file=sys.stderr)


def _stop_run(root: Path, plan: Plan, what: str) -> tuple[str | None, int | None]:
    if "mlflow" not in sys.modules:  # this process never opened a run
        return None, None
    from intent_mlops.data import versioning
    from intent_mlops.registry import tracking

    rev = plan.data_rev if plan.commit and plan.data_rev else versioning.WORKSPACE
    key = tracking.resume_key(plan.cfg.md5(), versioning.recorded_md5(root, plan.commit), rev)
    run = tracking.latest_run(plan.cfg, root, key)
    if run is None or run.data.tags.get(tracking.STAGE_TAG) in (tracking.COMPLETE, tracking.VALIDATION_FAILED):
        return None, None
    step = _checkpoint_step(root / ".intent-mlops" / "runs" / run.info.run_id)
    at = f" at step {step}" if step is not None else " before the first checkpoint"
    tracking.mark_stopped(run.info.run_id, f"interrupted by {what}{at}")
    return run.info.run_id, step


def _checkpoint_step(work: Path) -> int | None:
    """The optimizer step the run's last checkpoint holds (None: no checkpoint yet)."""
    from intent_mlops.train.checkpoint import CHECKPOINT, STATE_FILE

    for folder in (work / CHECKPOINT, work / (CHECKPOINT + ".old")):
        if (folder / STATE_FILE).exists():
            import torch

            blob = torch.load(folder / STATE_FILE, map_location="cpu", weights_only=True)
            return int(blob["state"]["global_step"])
    return None


if __name__ == "__main__":
    sys.exit(main())
