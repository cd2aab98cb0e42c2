"""Bad input, fuzzed (issue 15, item 4): the CSV import and the prediction input never raise anything
but the project's own errors, whatever the bytes or the JSON."""

from __future__ import annotations

import string
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from intent_mlops.config.params import ValidationConfig
from intent_mlops.data.io import DataError, read_csv, require_columns
from intent_mlops.data.validation import ValidationError, gate_import
from intent_mlops.inference.pyfunc import texts_from
from intent_mlops.inference.validation import InvalidInput, Limits, validate_texts, validate_top_k

pytestmark = pytest.mark.reliability
COUNTS: dict[str, int] = {}

csv_like = st.one_of(
    st.binary(max_size=400),
    st.lists(
        st.tuples(
            st.text(alphabet=string.printable + "\x00é€😀\u2028", max_size=40),
            st.text(alphabet=string.ascii_letters + " _;\t|\"'", max_size=12),
        ),
        max_size=25,
    ).map(lambda rows: ("text,label\n" + "\n".join(f"{t},{lab}" for t, lab in rows)).encode("utf-8", "replace")),
)


def _import(path: Path) -> None:
    df = read_csv(path)
    require_columns(df, path)
    _, report, _ = gate_import(df, ValidationConfig(min_rows=1, min_per_label=1), str(path))
    if not report.success:
        raise ValidationError(report)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=csv_like)
def test_csv_import_raises_only_project_errors(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "fuzz.csv"
    path.write_bytes(data)
    try:
        _import(path)
        COUNTS["csv accepted"] = COUNTS.get("csv accepted", 0) + 1
    except (DataError, ValidationError) as exc:
        assert str(exc).strip(), "an error says what is wrong"
        COUNTS["csv refused"] = COUNTS.get("csv refused", 0) + 1


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


texts = st.lists(st.text(alphabet=string.printable + "é😀\x00", max_size=70), min_size=0, max_size=10)
bodies = st.one_of(
    json_values,
    st.fixed_dictionaries({"text": json_values}),
    st.fixed_dictionaries({"text": texts}),  # well-formed shape: some pass, some are empty / too long / too many
    texts,
)


@settings(max_examples=300, deadline=None)
@given(body=bodies, top_k=json_values | st.integers(-2, 8))
def test_prediction_input_raises_only_invalid_input(body: Any, top_k: Any) -> None:
    try:
        validate_texts(texts_from(body), Limits(max_chars=50, max_batch=8))
        validate_top_k(top_k, 5)
        COUNTS["request accepted"] = COUNTS.get("request accepted", 0) + 1
    except InvalidInput as exc:
        assert str(exc).strip()
        COUNTS["request refused"] = COUNTS.get("request refused", 0) + 1


def test_fuzz_report(record: Callable[[str, str], None]) -> None:
    """Runs after the two fuzzers (file order): their counts go to the report."""
    if not COUNTS:
        pytest.skip("run with the fuzz tests")
    record("CSV import fuzzed (hypothesis)", f"{COUNTS.get('csv accepted', 0)} accepted, "
           f"{COUNTS.get('csv refused', 0)} refused with DataError/ValidationError, 0 other exceptions")  # fmt: skip
    record("prediction input fuzzed (hypothesis)", f"{COUNTS.get('request accepted', 0)} accepted, "
           f"{COUNTS.get('request refused', 0)} refused with InvalidInput, 0 other exceptions")  # fmt: skip


def test_oversized_and_odd_files_are_refused_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, record: Callable[[str, str], None]
) -> None:
    cases = {
        "empty": b"",
        "header only": b"text,label\n",
        "wrong delimiter": b"text;label\nhello;greet\n",
        "not utf-8": b"text,label\ncaf\xe9 au lait,order\n",
        "nul byte": b"text,label\nhel\x00lo,greet\n" * 60,
        "100k-character text": b"text,label\n" + b"x" * 100_000 + b",greet\n",
        "labels differing by case": b"text,label\n"
        + b"".join(b"row %d,%s\n" % (i, b"Greet" if i % 2 else b"greet") for i in range(60)),  # fmt: skip
        "one row of a label": b"text,label\n" + b"".join(b"row %d,greet\n" % i for i in range(60)) + b"lonely,bye\n",
    }
    for name, data in cases.items():
        path = tmp_path / f"{name.replace(' ', '_')}.csv"
        path.write_bytes(data)
        with pytest.raises((DataError, ValidationError)) as info:
            read = read_csv(path)
            require_columns(read, path)
            _, report, _ = gate_import(read, ValidationConfig(), str(path))
            if not report.success:
                raise ValidationError(report)
        assert path.name in str(info.value) or "raw" in str(info.value), (name, str(info.value)[:300])
    big = tmp_path / "big.csv"
    with big.open("wb") as f:  # sparse: 1 GiB on disk costs nothing, the size check refuses it unread
        f.truncate(2**30)
    monkeypatch.delenv("INTENT_MLOPS_MAX_CSV_MB", raising=False)
    with pytest.raises(DataError, match="MiB is over"):
        read_csv(big)
    record("bad files (empty, header only, delimiter, encoding, NUL, 100k chars, case, 1 GB)",
           f"{len(cases) + 1} cases, each a DataError/ValidationError naming the file")  # fmt: skip
