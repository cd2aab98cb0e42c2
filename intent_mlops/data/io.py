"""Reading, importing and splitting ``text,label`` CSV files.

Reading keeps the file line each record starts on as the frame's index (a quoted text may span
lines), so every later error (the GX gate's included) can point at the row a person sees in an
editor; a file that cannot be read gives a one-line :class:`DataError` naming the file and line.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import os
from pathlib import Path

import numpy as np
import pandas as pd

REQUIRED_COLUMNS = ("text", "label")
ALIASES = {"category": "label", "intent": "label", "utterance": "text", "sentence": "text"}


MAX_CSV_ENV, DEFAULT_MAX_CSV_MB = "INTENT_MLOPS_MAX_CSV_MB", 512


def max_csv_bytes() -> int:
    """Largest labelled CSV read (whole, for the line-exact gate): 512 MiB is millions of utterances,
    and a bigger file (a wrong export, a log dump) is refused before it can exhaust memory."""
    return int(float(os.environ.get(MAX_CSV_ENV) or DEFAULT_MAX_CSV_MB) * 2**20)


class DataError(ValueError):
    """A data file cannot be used; the message names the file and, where known, row and field."""


def read_csv(path: Path | str) -> pd.DataFrame:
    """Read a labelled CSV as text; index = the file line each record starts on (header is line 1).

    Records are found with Python's ``csv`` module, so a quoted text spanning several lines, blank
    lines and ``\\r\\n`` line ends keep the line numbers true to what an editor shows. Every problem
    is a one-line :class:`DataError` naming the file and the line.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.is_dir():
        raise DataError(f"{path}: is a directory; expected a CSV file with a header `text,label`")
    size, limit = path.stat().st_size, max_csv_bytes()
    if size > limit:
        raise DataError(
            f"{path}: {size / 2**20:.0f} MiB is over the {limit / 2**20:.0f} MiB a labelled data set may have "
            f"(the gate reads it whole); split it, or raise {MAX_CSV_ENV} on a machine with the memory"
        )
    raw = path.read_bytes()
    text = _decode(raw, path)
    if not text.strip():
        raise DataError(f"{path}: file is empty; expected a header line `text,label` and one row per example")
    if len(text) >= csv.field_size_limit():
        csv.field_size_limit(len(text) + 1)  # one field may be as long as the file; the default is 128 KiB
    reader = csv.reader(io.StringIO(text, newline=""))
    records: list[list[str]] = []
    push = records.append
    try:  # the last file line of every record, blank ones included
        ends = np.array([reader.line_num for row in reader if push(row) is None], dtype=np.int64)
    except csv.Error as exc:
        raise DataError(f"{path}: line {reader.line_num} is not valid CSV ({exc})") from None
    starts = np.concatenate(([1], ends[:-1] + 1))
    widths = np.fromiter(map(len, records), dtype=np.int64, count=len(records))
    blank = widths == 0
    for i in np.flatnonzero(widths == 1):  # a line of spaces is blank too, as for pandas
        blank[i] = not records[i][0].strip()
    keep = np.flatnonzero(~blank)
    if not len(keep):
        raise DataError(f"{path}: file is empty; expected a header line `text,label` and one row per example")
    header, body = records[keep[0]], keep[1:]
    _check_delimiter(header, path)
    if not len(body):
        raise DataError(f"{path}: has a header but no rows; expected one `text,label` row per example")
    width = len(header)
    rows = [records[i] for i in body]
    lines = starts[body]
    for j in np.flatnonzero(widths[body] != width):
        if len(rows[j]) > width:
            raise DataError(
                f"{path}: line {lines[j]} has {len(rows[j])} fields where the header has {width} "
                '(quote a text that contains a comma: "hi, there",greeting)'
            )
        rows[j] = rows[j] + [""] * (width - len(rows[j]))  # a missing field is empty, as for pandas
    last = int(lines[-1])
    if ends[body[-1]] > last and _unclosed_quote(text, last):
        raise DataError(f"{path}: line {last} opens a quoted text that is never closed (a missing '\"')")
    df = pd.DataFrame(rows, columns=_column_names([h.strip().lower() for h in header]), dtype=str)
    df = df.rename(columns={k: v for k, v in ALIASES.items() if k in df.columns and v not in df.columns})
    df.index = pd.Index(lines.tolist(), name="line")
    return df


def _decode(raw: bytes, path: Path) -> str:
    """UTF-8 (a byte-order mark is dropped); an invalid byte is reported by line and position."""
    skip = len(codecs.BOM_UTF8) if raw.startswith(codecs.BOM_UTF8) else 0
    try:
        return raw[skip:].decode("utf-8")
    except UnicodeDecodeError as exc:
        at = exc.start + skip
        before = raw[:at]
        line = before.count(b"\n") + before.count(b"\r") - before.count(b"\r\n") + 1
        line_start = max(before.rfind(b"\n"), before.rfind(b"\r")) + 1
        raise DataError(
            f"{path}: line {line} is not UTF-8 ({exc.reason} at byte {at - line_start + 1} of the line, "
            f"byte {at} of the file); save the file as UTF-8"
        ) from None


def _check_delimiter(header: list[str], path: Path) -> None:
    """A header read as one field that holds ``;``, tab or ``|`` means another separator."""
    if len(header) != 1:
        return
    found = [d for d in ";\t|" if d in header[0]]
    if found:
        delimiter = max(found, key=header[0].count)
        raise DataError(
            f"{path}: delimiter {delimiter!r} found where ',' expected: "
            "save the file as comma-separated CSV (text,label)"
        )


def _column_names(header: list[str]) -> list[str]:
    """pandas' names for odd headers: ``unnamed: i`` for an empty one, ``name.1`` for a repeat."""
    names: list[str] = []
    for i, name in enumerate(header):
        name = name or f"unnamed: {i}"
        base, n = name, 0
        while name in names:
            n += 1
            name = f"{base}.{n}"
        names.append(name)
    return names


def _unclosed_quote(text: str, line: int) -> bool:
    """Whether the record starting on ``line`` (the last one) opens a quote that never closes."""
    tail = "".join(io.StringIO(text, newline="").readlines()[line - 1 :])
    try:
        for _ in csv.reader(io.StringIO(tail, newline=""), strict=True):
            pass
    except csv.Error as exc:
        return "unexpected end of data" in str(exc)
    return False


def require_columns(df: pd.DataFrame, path: Path | str) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {missing}; found {list(df.columns)} "
            "(expected a header `text,label`; `category` is accepted for `label`)"
        )


def canonical(df: pd.DataFrame) -> pd.DataFrame:
    """Just ``text,label``, whitespace trimmed; the form written to ``data/``."""
    out = df.loc[:, list(REQUIRED_COLUMNS)].copy()
    for col in REQUIRED_COLUMNS:
        out[col] = out[col].astype(str).str.strip()
    return out


def write_csv(df: pd.DataFrame, path: Path | str) -> Path:
    """Byte-stable CSV (LF line ends, UTF-8), so equal data hashes equal in DVC."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    df.to_csv(tmp, index=False, lineterminator="\n", encoding="utf-8")
    tmp.replace(path)
    return path


def file_md5(path: Path | str) -> str:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def normalise_text(text: pd.Series) -> pd.Series:
    """Case- and space-insensitive key used for duplicate and leakage checks."""
    return text.astype(str).str.lower().str.split().str.join(" ")
