"""The reliability suite's report: each check records (check, result, figure); the session writes one
table to ``test-output/reliability.md`` and prints it (docs/reliability.md keeps a dated copy)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.conftest import REPO

ROWS: list[tuple[str, str, str]] = []
REPORT = REPO / "test-output" / "reliability.md"


@pytest.fixture
def record() -> Iterator[Callable[[str, str], None]]:
    """``record(check, figure)``: a row of the table, marked passed once the test body returns."""
    mine: list[tuple[str, str]] = []
    yield lambda check, figure: mine.append((check, figure))
    ROWS.extend((check, "passed", figure) for check, figure in mine)


def pytest_sessionfinish(session: pytest.Session) -> None:
    if not ROWS:
        return
    lines = ["| check | result | figure |", "|---|---|---|", *(f"| {c} | {r} | {f} |" for c, r, f in ROWS)]
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text("\n".join(lines) + "\n")
    print("\n\nreliability checks (test-output/reliability.md):\n" + "\n".join(lines))
