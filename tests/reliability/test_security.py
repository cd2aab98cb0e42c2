"""Security checks that read the source and the artifacts (issue 15, item 6)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from intent_mlops.model.loading import PICKLE_SUFFIXES, UnsafeModelError, model_folders
from tests.conftest import REPO

pytestmark = pytest.mark.reliability
SOURCES = ["intent_mlops", "flows", "tasks", "bench"]


def _python_files() -> list[Path]:
    return sorted(p for d in SOURCES for p in (REPO / d).rglob("*.py"))


def _calls(name: str) -> list[tuple[Path, int, str]]:
    """Every call of ``name(`` with its full argument text (calls may span lines)."""
    found = []
    for path in _python_files():
        text = path.read_text()
        for m in re.finditer(re.escape(name) + r"\(", text):
            depth, i = 1, m.end()
            while depth and i < len(text):
                depth += {"(": 1, ")": -1}.get(text[i], 0)
                i += 1
            found.append((path, text.count("\n", 0, m.start()) + 1, text[m.end() : i - 1]))
    return found


def test_no_remote_code_and_no_pickle_loads_in_the_source(record: Callable[[str, str], None]) -> None:
    files = _python_files()
    assert len(files) > 50
    remote_code = re.compile(r"trust_remote_code\s*=\s*True")
    remote = [f"{p}:{n}" for p, n, args in _calls("from_pretrained") if remote_code.search(args)]
    assert not remote, remote
    loads = _calls("torch.load")
    unsafe = [f"{p}:{n}" for p, n, args in loads if not re.search(r"weights_only\s*=\s*True", args)]
    assert not unsafe, f"torch.load without weights_only=True: {unsafe}"
    pickles = [f"{p}:{n}" for name in ("pickle.load", "pickle.loads", "cloudpickle.load", "joblib.load")
               for p, n, _ in _calls(name)]  # fmt: skip
    assert not pickles, pickles
    np_pickle = [f"{p}:{n}" for p, n, args in _calls("np.load") if "allow_pickle=True" in args.replace(" ", "")]
    assert not np_pickle, np_pickle
    record("source scan: trust_remote_code, torch.load, pickle", f"{len(files)} files, {len(loads)} torch.load calls")


def test_a_model_folder_with_a_pickle_is_refused(tmp_path: Path, record: Callable[[str, str], None]) -> None:
    for suffix in PICKLE_SUFFIXES:
        folder = tmp_path / suffix.strip(".")
        folder.mkdir()
        (folder / "config.json").write_text("{}")
        (folder / f"pytorch_model{suffix}").write_bytes(b"\x80\x04not really a pickle")
        with pytest.raises(UnsafeModelError, match="refusing pickle"):
            model_folders(str(folder))
    record("model folder holding a pickle file refused on load", f"{len(PICKLE_SUFFIXES)} suffixes")


def test_served_stack_binds_loopback_only(record: Callable[[str, str], None]) -> None:
    from flows import stack

    assert stack.HOST == "127.0.0.1"
    source = (REPO / "flows" / "stack.py").read_text()
    assert "0.0.0.0" not in source
    cli = (REPO / "flows" / "cli.py").read_text()
    assert 'sm.add_argument("--host", default="127.0.0.1"' in cli, "serve-model defaults to loopback"
    record("make serve and serve-model bind loopback by default", "127.0.0.1")
