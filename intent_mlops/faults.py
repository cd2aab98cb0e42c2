"""Named crash points for fault-injection tests (the failpoint pattern of etcd's gofail).

``INTENT_MLOPS_FAILPOINTS=after-register`` makes the process SIGKILL itself when it reaches that
point, exactly as a power cut or an OOM kill would: no ``finally`` block, no flow-state update.
Unset (always, outside tests) each call is one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

ENV = "INTENT_MLOPS_FAILPOINTS"


def failpoint(name: str) -> None:
    """Die here without cleanup if ``name`` is listed in ``$INTENT_MLOPS_FAILPOINTS``."""
    armed = os.environ.get(ENV)
    if armed and name in {x.strip() for x in armed.split(",")}:
        os.kill(os.getpid(), signal.SIGKILL)
