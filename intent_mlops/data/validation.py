"""The Great Expectations (GX Core 1.x) gate on the raw data set and on its splits.

Checks that need a derived table (per-label counts, one text under two labels, one text in two
splits) validate that table with GX as well, so every rule shows up in one GX result. A failed
gate raises :class:`ValidationError` whose message lists each broken expectation with the count
and example CSV lines; the same report is saved as a flow artifact and an MLflow artifact.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from intent_mlops.config.params import ValidationConfig
from intent_mlops.data.io import REQUIRED_COLUMNS, normalise_text

#: C0 control characters except tab, LF and CR (a quoted text may span lines), and DEL.
CONTROL_CHARS = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"
_BLANK = r"^\s*$"
#: Example values longer than this are cut in reports (summary, markdown, JSON).
MAX_EXAMPLE_CHARS = 80


def _short(value: Any, limit: int = MAX_EXAMPLE_CHARS) -> Any:
    """A long string cut to ``limit`` characters plus its length; containers are cut inside."""
    if isinstance(value, str):
        return value if len(value) <= limit else f"{value[:limit]}… ({len(value)} chars)"
    if isinstance(value, dict):
        return {k: _short(v, limit) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_short(v, limit) for v in value]
    return value


def label_key(labels: pd.Series) -> pd.Series:
    """Labels compared without case and with whitespace runs collapsed (``Card  Arrival`` = ``card arrival``)."""
    return labels.astype(str).str.casefold().str.split().str.join(" ")


class ValidationError(ValueError):
    """The data failed the GX gate; ``report`` holds the details."""

    def __init__(self, report: ValidationReport) -> None:
        super().__init__(report.summary())
        self.report = report


@dataclass
class Failure:
    table: str
    expectation: str
    column: str | None
    problem: str
    count: int | None
    examples: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ValidationReport:
    name: str
    source: str
    evaluated: int
    failures: list[Failure]
    gx_results: list[dict[str, Any]] = field(default_factory=list)

    @property
    def success(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        if self.success:
            return f"GX gate '{self.name}' passed on {self.source}: {self.evaluated} expectations met"
        lines = [
            f"GX gate '{self.name}' failed on {self.source}: "
            f"{len(self.failures)} of {self.evaluated} expectations failed"
        ]
        for f in self.failures:
            count = f" ({f.count} row(s))" if f.count is not None else ""
            col = f"({f.column})" if f.column else ""
            lines.append(f"- [{f.table}] {f.expectation}{col}: {f.problem}{count}")
            for ex in f.examples:
                lines.append("    e.g. " + ", ".join(f"{k}={v!r}" for k, v in ex.items()))
        return "\n".join(lines)

    def markdown(self) -> str:
        status = "passed" if self.success else "FAILED"
        out = [f"# Data validation `{self.name}`: {status}", "", f"Source: `{self.source}`", ""]
        out.append(f"{self.evaluated - len(self.failures)} of {self.evaluated} expectations met.")
        if self.failures:
            out += ["", "| table | expectation | column | problem | rows | examples |", "|---|---|---|---|---|---|"]
            for f in self.failures:
                ex = "<br>".join(", ".join(f"{k}={v!r}" for k, v in e.items()) for e in f.examples)
                ex = ex.replace("|", "\\|")
                out.append(
                    f"| {f.table} | `{f.expectation}` | {f.column or ''} | {f.problem} | "
                    f"{'' if f.count is None else f.count} | {ex} |"
                )
        return "\n".join(out) + "\n"

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, default=str)


def _context() -> Any:
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    return ctx


class _Gate:
    """Collects (table, frame, expectations) and validates them in one ephemeral GX context."""

    def __init__(self, cfg: ValidationConfig) -> None:
        self.cfg = cfg
        self.ctx = _context()
        self.source = self.ctx.data_sources.add_pandas("intent_data")
        self.failures: list[Failure] = []
        self.results: list[dict[str, Any]] = []
        self.evaluated = 0

    def check(self, table: str, df: pd.DataFrame, expectations: list[Any], problem: Any) -> None:
        import great_expectations as gx

        asset = self.source.add_dataframe_asset(table)
        batch = asset.add_batch_definition_whole_dataframe("all").get_batch(batch_parameters={"dataframe": df})
        suite = gx.ExpectationSuite(name=table, expectations=expectations)
        result = batch.validate(suite, result_format={"result_format": "COMPLETE"})
        for r in result.results:
            self.evaluated += 1
            as_dict = _short(r.to_json_dict())
            self.results.append({"table": table, **as_dict})
            if r.success:
                continue
            conf = r.expectation_config
            res = as_dict.get("result") or {}
            idx = res.get("unexpected_index_list") or []
            self.failures.append(
                Failure(
                    table=table,
                    expectation=conf.type,
                    column=conf.kwargs.get("column"),
                    problem=problem(conf.type, conf.kwargs, res),
                    count=res.get("unexpected_count"),
                    examples=[dict(e) for e in idx[: self.cfg.max_examples]],
                )
            )


def _problem(cfg: ValidationConfig) -> Any:
    def explain(kind: str, kw: dict[str, Any], res: dict[str, Any]) -> str:
        col = kw.get("column")
        if kind == "expect_column_to_exist":
            return f"required column '{col}' is missing"
        if kind == "expect_column_values_to_not_be_null":
            return f"empty {col}"
        if kind == "expect_column_values_to_not_match_regex" and kw.get("regex") == CONTROL_CHARS:
            return f"control characters (e.g. NUL) in {col}"
        if kind == "expect_column_values_to_not_match_regex":
            return f"blank {col}"
        if kind == "expect_column_value_lengths_to_be_between":
            return f"{col} length outside [{cfg.min_chars}, {cfg.max_chars}] characters"
        if kind == "expect_table_row_count_to_be_between":
            return f"{res.get('observed_value')} rows, fewer than {kw.get('min_value')}"
        if kind == "expect_column_values_to_be_between" and col == "count":
            return f"labels with fewer than {int(kw['min_value'])} examples"
        if kind == "expect_column_values_to_be_unique" and col == "text_key":
            return "the same text appears with two different labels"
        if kind == "expect_column_values_to_be_unique" and col == "leak_key":
            return "the same text appears in two splits (leakage)"
        if kind == "expect_column_values_to_be_in_set":
            return f"{col} not seen in train"
        return kind.replace("_", " ")

    return explain


def _row_rules(cfg: ValidationConfig, min_rows: int) -> list[Any]:
    import great_expectations as gx

    e = gx.expectations
    rules: list[Any] = [e.ExpectTableRowCountToBeBetween(min_value=min_rows)]
    for col in REQUIRED_COLUMNS:
        rules += [
            e.ExpectColumnValuesToNotBeNull(column=col),
            e.ExpectColumnValuesToNotMatchRegex(column=col, regex=_BLANK),
            e.ExpectColumnValuesToNotMatchRegex(column=col, regex=CONTROL_CHARS),
        ]
    rules.append(e.ExpectColumnValueLengthsToBeBetween(column="text", min_value=cfg.min_chars, max_value=cfg.max_chars))
    return rules


def _columns_present(gate: _Gate, table: str, df: pd.DataFrame) -> bool:
    import great_expectations as gx

    rules = [gx.expectations.ExpectColumnToExist(column=c) for c in REQUIRED_COLUMNS]
    before = len(gate.failures)
    gate.check(f"{table}_columns", df, rules, _problem(gate.cfg))
    return len(gate.failures) == before


def _label_counts(gate: _Gate, table: str, df: pd.DataFrame, minimum: int) -> None:
    import great_expectations as gx

    counts = df["label"].value_counts().rename_axis("label").reset_index(name="count")
    counts = counts.set_index("label", drop=False).sort_index()
    counts.index.name = "label_name"
    rule = gx.expectations.ExpectColumnValuesToBeBetween(column="count", min_value=minimum)
    gate.check(f"{table}_label_counts", counts, [rule], _problem(gate.cfg))


def _conflicting_labels(gate: _Gate, table: str, df: pd.DataFrame) -> None:
    import great_expectations as gx

    pairs = pd.DataFrame({"text_key": normalise_text(df["text"]), "label": df["label"]}, index=df.index)
    pairs = pairs.drop_duplicates(subset=["text_key", "label"], keep="first")
    rule = gx.expectations.ExpectColumnValuesToBeUnique(column="text_key")
    gate.check(f"{table}_text_labels", pairs, [rule], _problem(gate.cfg))


def _label_spellings(labels: pd.Series) -> pd.DataFrame:
    """One row per distinct non-blank label (index), its ``label_key``, row count and first line."""
    present = labels[labels.notna()].astype(str)
    table = pd.DataFrame({"label": present.to_numpy(), "line": present.index.to_numpy()})
    table = table.groupby("label", sort=True).agg(rows=("line", "size"), first_line=("line", "first"))
    table.insert(0, "label_key", label_key(table.index.to_series()))
    return table[table["label_key"] != ""]  # blank labels are the blank rule's to report


def _ambiguous_labels(gate: _Gate, table: str, df: pd.DataFrame) -> None:
    """Labels equal but for case or whitespace runs (``Greet`` / ``greet``) would become two classes."""
    import great_expectations as gx

    spellings = _label_spellings(df["label"])
    generic = _problem(gate.cfg)

    def explain(kind: str, kw: dict[str, Any], res: dict[str, Any]) -> str:
        if kind != "expect_column_values_to_be_unique":
            return str(generic(kind, kw, res))
        clashes = spellings[spellings["label_key"].duplicated(keep=False)]
        described = [
            (key, f"{_short(name)!r} ({rows} row(s), first on line {first})")
            for name, key, rows, first in clashes.itertuples()
        ]
        groups = [" / ".join(d for k, d in described if k == key) for key in sorted({k for k, _ in described})]
        return (
            "labels differ only by case or spacing (ambiguous): "
            + "; ".join(groups)
            + " (fix the CSV, or set validation.normalise_labels: true to merge each group into its most "
            "frequent spelling)"
        )

    rule = gx.expectations.ExpectColumnValuesToBeUnique(column="label_key")
    gate.check(f"{table}_label_spellings", spellings, [rule], explain)


def normalise_labels(df: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """Merge labels equal but for case or whitespace runs into their most frequent spelling.

    Ties go to the lexicographically first spelling. Returns the new frame (same index, other
    columns untouched) and the mapping ``{original: chosen}`` of every spelling that changed, for
    the caller to print; an empty mapping means the frame came back unchanged.
    """
    if "label" not in df.columns:
        return df, {}
    spellings = _label_spellings(df["label"])
    mapping: dict[str, str] = {}
    for _, group in spellings.groupby("label_key", sort=True):
        if len(group) < 2:
            continue
        rows = {str(name): int(n) for name, n in group["rows"].items()}
        chosen = min(rows, key=lambda name: (-rows[name], name))
        mapping.update({name: chosen for name in rows if name != chosen})
    if not mapping:
        return df, {}
    out = df.copy()
    out["label"] = out["label"].replace(mapping)
    return out, mapping


def gate_import(
    df: pd.DataFrame, cfg: ValidationConfig, source: str
) -> tuple[pd.DataFrame, ValidationReport, dict[str, str]]:
    """The raw gate for data being imported: labels normalised first when ``cfg.normalise_labels``.

    Returns the (possibly normalised) frame to store, the GX report (check ``report.success``) and
    the label mapping applied (``{}`` when none), which the caller prints.
    """
    mapping: dict[str, str] = {}
    if cfg.normalise_labels:
        df, mapping = normalise_labels(df)
    return df, validate_raw(df, cfg, source), mapping


def validate_raw(df: pd.DataFrame, cfg: ValidationConfig, source: str) -> ValidationReport:
    """Gate the raw data set as given; ``df`` index is the CSV line number (see ``data.read_csv``).

    Labels are not normalised here (see :func:`gate_import`): differing spellings of one label fail.
    """
    gate = _Gate(cfg)
    if _columns_present(gate, "raw", df):
        gate.check("raw", df, _row_rules(cfg, cfg.min_rows), _problem(cfg))
        _label_counts(gate, "raw", df, cfg.min_per_label)
        _ambiguous_labels(gate, "raw", df)
        _conflicting_labels(gate, "raw", df)
    return ValidationReport("raw", source, gate.evaluated, gate.failures, gate.results)


def validate_splits(splits: dict[str, pd.DataFrame], cfg: ValidationConfig, source: str) -> ValidationReport:
    """Gate train/dev/test: row rules on each, no leakage, no conflicting labels, known labels."""
    import great_expectations as gx

    gate = _Gate(cfg)
    present = all([_columns_present(gate, name, df) for name, df in splits.items()])
    if present:
        for name, df in splits.items():
            gate.check(name, df, _row_rules(cfg, 1), _problem(cfg))
        both = pd.concat(
            [
                pd.DataFrame({"leak_key": normalise_text(df["text"]), "split": name, "line": df.index})
                for name, df in splits.items()
            ],
            ignore_index=True,
        )
        both = both.drop_duplicates(subset=["leak_key", "split"])
        both.index = pd.Index(both["split"] + ":" + both["line"].astype(str), name="row")
        rule = gx.expectations.ExpectColumnValuesToBeUnique(column="leak_key")
        gate.check("splits_leakage", both, [rule], _problem(cfg))
        everything = pd.concat(
            [df.set_axis(pd.Index([f"{name}:{i}" for i in df.index], name="row")) for name, df in splits.items()]
        )
        _conflicting_labels(gate, "splits", everything)
        train_labels = sorted(set(splits["train"]["label"]))
        for name in ("dev", "test"):
            known = gx.expectations.ExpectColumnValuesToBeInSet(column="label", value_set=train_labels)
            gate.check(f"{name}_labels", splits[name], [known], _problem(cfg))
    return ValidationReport("splits", source, gate.evaluated, gate.failures, gate.results)
