"""Progress bars that suit where they are written: live on a terminal, sparse in a log.

tqdm redraws up to ten times a second; on a terminal each frame overwrites the last, but in a log
file, a CI console or a Prefect worker's captured output every frame stays (one training log held
487 frames of one bar). Off a terminal a bar redraws at most every :data:`LOG_INTERVAL_SECONDS`.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

LOG_INTERVAL_SECONDS = 10.0


def progress_bar(file: TextIO | None = None, **kwargs: Any) -> Any:
    """A tqdm bar on ``file`` (default stderr); ``kwargs`` as for tqdm. Postfix updates should pass
    ``refresh=False`` so that they wait for the next frame too."""
    from tqdm.auto import tqdm

    stream = file or sys.stderr
    if not _is_terminal(stream):
        kwargs.setdefault("mininterval", LOG_INTERVAL_SECONDS)
        kwargs.setdefault("maxinterval", LOG_INTERVAL_SECONDS)
    return tqdm(file=stream, **kwargs)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
