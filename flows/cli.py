"""``intent-mlops``: the commands a user types (see ../shared/CONVENTIONS.md).

It lives beside the flows, not in the core package, because ``train`` starts a Prefect flow and
the core stays free of Prefect.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from intent_mlops.config.environment import apply_defaults, project_root


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="intent-mlops", description=__doc__)
    p.add_argument("--project", default=None, help="project folder (default: nearest with params.yaml)")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="run the training flow (validate, version, fine-tune, track, register)")
    t.add_argument("--data-rev", default=None, help="git revision whose data.dvc to train on (default: workspace)")
    t.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a params.yaml value, e.g. --set train.epochs=2",
    )

    r = sub.add_parser("retrain", help="champion/challenger: train on new data, promote only a better model")
    r.add_argument("--data-rev", default=None, help="git revision whose data.dvc to train on (default: workspace)")
    r.add_argument("--force", action="store_true", help="train even when the champion has this data and params")
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a params.yaml value for this run")  # fmt: skip

    sub.add_parser("history", help="every champion decision in order: promoted, refused, rollback")
    rb = sub.add_parser("rollback", help="move champion back (default: to previous-champion) and record why")
    rb.add_argument("--to", dest="to_version", default=None, metavar="VERSION", help="version to crown")
    rb.add_argument("--reason", default="manual rollback", help="recorded with the decision")

    d = sub.add_parser("data", help="manage the tracked data set")
    dsub = d.add_subparsers(dest="data_command", required=True)
    for name, help_ in (("import", "replace the tracked data set with FILE"), ("add", "append FILE's rows")):
        x = dsub.add_parser(name, help=help_)
        x.add_argument("file", type=Path)
        x.add_argument("--no-push", action="store_true", help="do not push to the DVC remote")
    g = dsub.add_parser("generate", help="write the default generated data set and track it")
    g.add_argument("--batch", type=int, default=None, metavar="N",
                   help="instead write batch N of new labelled rows (new phrasings, one new intent) "
                   "for `intent-mlops data add`")  # fmt: skip
    dsub.add_parser("ensure", help="make data/ match data.dvc: pull it, or generate the default set")

    sub.add_parser("prepare", help="the DVC prepare stage: data/intents.csv -> splits/")
    sub.add_parser("params", help="list every params.yaml key with its default and meaning")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    root = Path(args.project).resolve() if args.project else project_root()
    apply_defaults(root)
    from intent_mlops.config.params import ConfigError
    from intent_mlops.data.io import DataError
    from intent_mlops.data.validation import ValidationError

    try:
        return _dispatch(args, root)
    except (DataError, ConfigError, ValidationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _dispatch(args: argparse.Namespace, root: Path) -> int:
    from intent_mlops.data import commands

    if args.command == "train":
        from flows.training import run_training

        return run_training(root, args.data_rev, args.overrides)
    if args.command == "retrain":
        from flows.retraining import run_retraining

        return run_retraining(root, args.data_rev, args.force, args.overrides)
    if args.command in ("history", "rollback"):
        from intent_mlops.registry import history as decisions

        if args.command == "history":
            return decisions.print_history(root)
        return decisions.rollback_command(root, args.to_version, args.reason)
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
    if args.command == "params":
        from intent_mlops.config.params import describe

        print(describe())
        return 0
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
