"""The label space: data labels in a fixed order, ``oos`` in data named ``out_of_scope`` in predictions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

OOS_DATA, OOS_PREDICTED = "oos", "out_of_scope"


@dataclass(frozen=True)
class LabelSpace:
    """Data labels in a fixed order; predictions name ``oos`` as ``out_of_scope``."""

    labels: tuple[str, ...]

    @classmethod
    def from_labels(cls, labels: Sequence[str]) -> LabelSpace:
        return cls(tuple(sorted(set(labels))))

    def encode(self, labels: Sequence[str]) -> list[int]:
        index = {name: i for i, name in enumerate(self.labels)}
        return [index[x] for x in labels]

    @property
    def id2label(self) -> dict[int, str]:
        return {i: (OOS_PREDICTED if x == OOS_DATA else x) for i, x in enumerate(self.labels)}

    @property
    def label2id(self) -> dict[str, int]:
        return {v: k for k, v in self.id2label.items()}


def labels_of(model: Any) -> LabelSpace:
    """Recover the data labels from a saved model's ``id2label``."""
    id2label = model.config.id2label
    names = [id2label[i] for i in range(len(id2label))]
    return LabelSpace(tuple(OOS_DATA if x == OOS_PREDICTED else x for x in names))
