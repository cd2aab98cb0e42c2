"""Typed flow parameters: the Prefect UI renders them as a form (types, enums, bounds; the
descriptions come from each flow's docstring ``Args:`` section, which Prefect reads).

Each typed field is a shortcut for a ``--set`` override of ``params.yaml``; ``overrides`` takes
any other key. Values the form cannot check (an unknown key, a bad value in ``overrides``) are
refused by the flow's own config validation with a message naming the key.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field


class SignificanceTest(StrEnum):
    bootstrap = "bootstrap"
    mcnemar = "mcnemar"


DataRev = str | None
Overrides = list[str] | None
ProjectDir = str
Force = bool
RequireApproval = bool | None
Significance = SignificanceTest | None
Epochs = Annotated[int | None, Field(ge=1, le=100)]
LearningRate = Annotated[float | None, Field(gt=0, le=0.1)]


def as_overrides(
    overrides: list[str] | None,
    epochs: int | None = None,
    learning_rate: float | None = None,
    significance_test: SignificanceTest | str | None = None,
    require_approval: bool | None = None,
) -> list[str]:
    """The typed shortcuts as ``section.key=value`` strings, after the free-form ones (they win)."""
    out = list(overrides or [])
    if epochs is not None:
        out.append(f"train.epochs={epochs}")
    if learning_rate is not None:
        out.append(f"train.learning_rate={learning_rate}")
    if significance_test is not None:
        out.append(f"promotion.significance_test={SignificanceTest(significance_test).value}")
    if require_approval is not None:
        out.append(f"promotion.require_approval={str(require_approval).lower()}")
    return out
