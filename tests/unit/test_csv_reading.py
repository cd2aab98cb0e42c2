"""``read_csv``: true file line numbers, and one-line errors that name the file and the line."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest

from intent_mlops.config.params import ValidationConfig
from intent_mlops.data.io import DataError, read_csv, require_columns
from intent_mlops.data.validation import validate_raw
from intent_mlops.demo.corpus import generate


def _write(tmp_path: Path, content: str | bytes, name: str = "data.csv") -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_bytes(content.encode("utf-8"))
    return path


def _error(path: Path) -> str:
    with pytest.raises(DataError) as info:
        read_csv(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and len(message.splitlines()) == 1, message
    return message


def test_quoted_newlines_keep_true_line_numbers(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        'text,label\nhello,greet\n"first line\nsecond line\n\nfourth",note\nafter the note,greet\n\nbye,leave\n',
    )
    df = read_csv(path)
    assert df["text"].tolist() == ["hello", "first line\nsecond line\n\nfourth", "after the note", "bye"]
    assert df.index.tolist() == [2, 3, 7, 9], "each record's starting line, blank lines counted"
    assert df.index.name == "line"


def test_crlf_and_bom_files(tmp_path: Path) -> None:
    path = _write(tmp_path, '\ufefftext,label\r\na,x\r\n"b\r\nc",y\r\nd,z\r\n')
    df = read_csv(path)
    assert list(df.columns) == ["text", "label"]
    assert df["text"].tolist() == ["a", "b\r\nc", "d"]
    assert df.index.tolist() == [2, 3, 5]


def test_gate_reports_the_real_line_after_a_multiline_text(tmp_path: Path) -> None:
    good = generate(per_intent=8, typo_rate=0.0, label_noise=0.0)
    good = good[good["text"].str.len() <= 80].reset_index(drop=True)
    good.loc[0, "text"] = "a text\nspread over\nthree lines"
    good.loc[60, "text"] = "bad\x00text"
    path = tmp_path / "data.csv"
    good.to_csv(path, index=False)
    df = read_csv(path)
    # header on line 1, row 0 on lines 2-4, so row i (i >= 1) starts on line i + 4
    assert df.index[60] == 64
    cfg = ValidationConfig(min_rows=50, min_per_label=5, min_chars=2, max_chars=80)
    text = validate_raw(df, cfg, str(path)).summary()
    assert "control characters (e.g. NUL) in text" in text and "line=64" in text


def test_missing_field_is_blank_at_its_line(tmp_path: Path) -> None:
    df = read_csv(_write(tmp_path, 'text,label\n"two\nlines",a\nno label here\n'))
    assert df.loc[4, "label"] == "" and df.loc[4, "text"] == "no label here"


def test_too_many_fields_names_the_line(tmp_path: Path) -> None:
    message = _error(_write(tmp_path, 'text,label\n"x\ny",a\nhi, there,greet\n'))
    assert "line 4 has 3 fields where the header has 2" in message and "quote" in message


def test_unclosed_quote_names_the_line(tmp_path: Path) -> None:
    message = _error(_write(tmp_path, 'text,label\nok,a\n"never closed,b\nmore,c\n'))
    assert "line 3 opens a quoted text that is never closed" in message


@pytest.mark.parametrize(("sep", "shown"), [(";", "';'"), ("\t", "'\\t'"), ("|", "'|'")])
def test_other_delimiters_are_refused(tmp_path: Path, sep: str, shown: str) -> None:
    path = _write(tmp_path, f"text{sep}label\nhello, there{sep}greet\nbye{sep}leave\n")
    message = _error(path)
    assert f"delimiter {shown} found where ',' expected" in message
    assert "save the file as comma-separated CSV (text,label)" in message


@pytest.mark.parametrize("content", ["", "\n\n", "  \r\n"])
def test_empty_file(tmp_path: Path, content: str) -> None:
    assert "file is empty" in _error(_write(tmp_path, content))


def test_header_only(tmp_path: Path) -> None:
    assert "has a header but no rows" in _error(_write(tmp_path, "text,label\n\n"))


def test_directory_is_refused(tmp_path: Path) -> None:
    assert "is a directory" in _error(tmp_path)


def test_non_utf8_names_line_and_byte(tmp_path: Path) -> None:
    content = b'text,label\nhello,a\n"two\nlines",b\n\n' + "abcd\xe9,c\n".encode("latin-1")
    message = _error(_write(tmp_path, content))
    assert "line 6 is not UTF-8 (invalid continuation byte at byte 5 of the line" in message
    assert "save the file as UTF-8" in message


def test_non_utf8_start_byte_after_bom(tmp_path: Path) -> None:
    content = b"\xef\xbb\xbftext,label\n\xffx,a\n"
    assert "line 2 is not UTF-8 (invalid start byte at byte 1 of the line" in _error(_write(tmp_path, content))


def test_odd_headers_are_named_like_pandas(tmp_path: Path) -> None:
    df = read_csv(_write(tmp_path, "Text,Label,,text\na,b,c,d\n"))
    assert list(df.columns) == ["text", "label", "unnamed: 2", "text.1"]
    require_columns(df, "x")


def test_long_field_is_read(tmp_path: Path) -> None:
    long = "w" * 300_000
    df = read_csv(_write(tmp_path, f"text,label\n{long},a\n"))
    assert df.loc[2, "text"] == long


def test_same_frame_as_pandas_on_plain_csv(tmp_path: Path) -> None:
    df = generate(per_intent=10)
    path = tmp_path / "plain.csv"
    df.to_csv(path, index=False)
    ours = read_csv(path)
    theirs = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[])
    theirs.index = pd.RangeIndex(2, len(theirs) + 2, name="line")
    pd.testing.assert_frame_equal(ours, theirs, check_index_type=False)


def test_100k_rows_read_fast(tmp_path: Path) -> None:
    n = 100_000
    texts = [f"my card number {i} has not arrived, what now?" for i in range(n)]
    texts[500] = "a quoted text\nover two lines"
    path = tmp_path / "big.csv"
    pd.DataFrame({"text": texts, "label": [f"intent_{i % 77}" for i in range(n)]}).to_csv(path, index=False)
    start = time.perf_counter()
    df = read_csv(path)
    elapsed = time.perf_counter() - start
    assert len(df) == n and df.index[501] == 504
    assert elapsed < 2.0, f"{elapsed:.2f} s for {n} rows"
