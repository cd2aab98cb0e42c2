"""Every command the conventions list is wired into the CLI (a refactor once dropped `serve`)."""

from __future__ import annotations

import pytest

from flows.cli import _parser


@pytest.mark.parametrize(
    "argv",
    [["train"], ["retrain", "--force"], ["history"], ["rollback", "--to", "2"], ["serve"], ["params"],
     ["data", "import", "x.csv"], ["data", "add", "x.csv"], ["data", "generate", "--batch", "1"], ["prepare"],
     ["decide", "--version", "2"], ["rollback", "--to", "2", "--force"], ["monitor", "--since", "2h"],
     ["monitor", "--since", "2025-01-31T09:00", "--until", "30m"]],
)  # fmt: skip
def test_command_exists(argv: list[str]) -> None:
    args = _parser().parse_args(argv)
    assert args.command == argv[0]
