"""Champion and challenger scored on the same rows: the current dev split minus what the champion saw.

Comparing a new model's dev score with the old model's score on an older dev set, or on rows the
old model trained on, is the classic way to crown the wrong model; here both models predict every
kept row of one dev set, and the per-example predictions are kept for the paired test and the record.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from intent_mlops.config.params import TrainConfig
from intent_mlops.data.lineage import text_hashes
from intent_mlops.evaluation.evaluate import predict_labels


@dataclass
class Comparison:
    lines: list[int]  # CSV line of each compared dev row (no text: the record holds no customer text)
    y_true: list[str]
    challenger: list[str]
    champion: list[str] | None  # None: there is no champion
    champion_labels: list[str] | None
    excluded_rows: int  # dev rows a model trained on, dropped from both sides
    challenger_labels: list[str] | None = None  # the challenger model's label set

    def predictions_csv(self) -> str:
        df = pd.DataFrame({"line": self.lines, "label": self.y_true, "challenger": self.challenger})
        if self.champion is not None:
            df["champion"] = self.champion
        buf = io.StringIO()
        df.to_csv(buf, index=False, lineterminator="\n")
        return buf.getvalue()


def compare(
    challenger_dir: Path | str,
    champion_dir: Path | str | None,
    dev: pd.DataFrame,
    seen_hashes: set[str] | None,
    cfg: TrainConfig,
) -> Comparison:
    """Predict the kept dev rows with both models (``dev`` index: CSV line numbers); rows whose text
    hash is in ``seen_hashes`` (a model trained on them) are dropped from both sides.

    ``cfg`` is the challenger's run config; the champion (a logged model) predicts with the settings it
    was logged with (``predict_labels``), so ``--set train.max_length=32`` never truncates its inputs.
    """
    seen = [h in seen_hashes for h in text_hashes(dev["text"])] if seen_hashes else None
    kept = dev if seen is None else dev[[not s for s in seen]]
    texts: Sequence[str] = kept["text"].tolist()
    challenger, challenger_labels = predict_labels(challenger_dir, texts, cfg)
    champion, champion_labels = (None, None) if champion_dir is None else predict_labels(champion_dir, texts, cfg)
    return Comparison(
        lines=[int(i) for i in kept.index],
        y_true=kept["label"].tolist(),
        challenger=challenger,
        champion=champion,
        champion_labels=champion_labels,
        excluded_rows=len(dev) - len(kept),
        challenger_labels=challenger_labels,
    )
