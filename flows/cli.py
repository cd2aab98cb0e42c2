"""``intent-mlops``: the commands a user types (see ../shared/CONVENTIONS.md).

It lives beside the flows, not in the core package, because ``train`` starts a Prefect flow and
the core stays free of Prefect.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from intent_mlops.environment import apply_defaults, project_root


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

    d = sub.add_parser("data", help="manage the tracked data set")
    dsub = d.add_subparsers(dest="data_command", required=True)
    for name, help_ in (("import", "replace the tracked data set with FILE"), ("add", "append FILE's rows")):
        x = dsub.add_parser(name, help=help_)
        x.add_argument("file", type=Path)
        x.add_argument("--no-push", action="store_true", help="do not push to the DVC remote")
    dsub.add_parser("generate", help="write the default generated data set and track it")
    dsub.add_parser("ensure", help="make data/ match data.dvc: pull it, or generate the default set")

    sub.add_parser("prepare", help="the DVC prepare stage: data/intents.csv -> splits/")
    sub.add_parser("params", help="list every params.yaml key with its default and meaning")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    root = Path(args.project).resolve() if args.project else project_root()
    apply_defaults(root)
    from intent_mlops.config import ConfigError
    from intent_mlops.data import DataError
    from intent_mlops.validation import ValidationError

    try:
        return _dispatch(args, root)
    except (DataError, ConfigError, ValidationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _dispatch(args: argparse.Namespace, root: Path) -> int:
    from intent_mlops import commands

    if args.command == "train":
        from flows.training import run_training

        return run_training(root, args.data_rev, args.overrides)
    if args.command == "data":
        if args.data_command in ("import", "add"):
            return commands.data_import(root, args.file, append=args.data_command == "add", push=not args.no_push)
        if args.data_command == "generate":
            return commands.data_generate(root)
        return commands.data_ensure(root)
    if args.command == "prepare":
        return commands.prepare(root)
    if args.command == "params":
        from intent_mlops.config import describe

        print(describe())
        return 0
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
