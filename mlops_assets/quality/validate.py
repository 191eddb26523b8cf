"""Validate a raw frame against a dataset schema, file by file.

Row-level failures (a null where none is allowed, a value out of range or not finite, a label
outside the known classes, text in a numeric column) move the row to quarantine with its reason.
Dataset-level failures (a missing, extra or mistyped column, too few rows, one class, a file
that is mostly bad) are collected, all at once, into the report: the caller refuses the data.
"""

import difflib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pandera.pandas as pa

from mlops_assets.quality.schema import DatasetSchema
from mlops_assets.sources import LINEAGE_COLUMNS, SOURCE_FILE, SOURCE_ROW

QUARANTINE_COLUMNS = ("quarantine_column", "quarantine_rule", "quarantine_value")
ALL_FILES = "all files"
# A column where most values fail to parse has changed type; that is not a few bad rows.
DTYPE_DRIFT_SHARE = 0.5

_RULE_WORDS = {
    "column_in_dataframe": "missing column: the schema requires it",
    "column_in_schema": "unexpected column: not in the schema (rename it, drop it, or add it "
    "to the schema)",
    "not_nullable": "null value where the schema allows none",
}


@dataclass(frozen=True)
class QualityThresholds:
    min_rows: int = 30
    min_class_share: float = 0.02
    max_quarantine_share: float = 0.10
    max_duplicate_share: float = 0.05
    # Identical features with different labels: 0 refuses any, since no model can fit both.
    max_conflict_share: float = 0.0


@dataclass(frozen=True)
class DatasetFailure:
    file: str
    column: str | None
    rule: str
    message: str

    def __str__(self) -> str:
        where = f"column '{self.column}'" if self.column else "dataset"
        return f"{self.file}: {where}: {self.rule}: {self.message}"


@dataclass
class ValidationReport:
    valid: pd.DataFrame
    quarantined: pd.DataFrame
    failures: list[DatasetFailure] = field(default_factory=list)
    rows_in: int = 0

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def rows_valid(self) -> int:
        return len(self.valid)

    @property
    def rows_quarantined(self) -> int:
        if self.quarantined.empty:
            return 0
        return int(self.quarantined[[SOURCE_FILE, SOURCE_ROW]].drop_duplicates().shape[0])

    @property
    def reconciles(self) -> bool:
        return self.rows_in == self.rows_valid + self.rows_quarantined

    def failure_table(self) -> pd.DataFrame:
        return pd.DataFrame(
            [(f.file, f.column or "", f.rule, f.message) for f in self.failures],
            columns=["file", "column", "rule", "message"],
        )

    def describe_failures(self) -> str:
        lines = [f"{len(self.failures)} dataset-level failure(s):"]
        lines += [f"  - {f}" for f in self.failures]
        return "\n".join(lines)


def _rule_text(check: str, failure_case: object) -> tuple[str, str]:
    if check in _RULE_WORDS:
        return check, _RULE_WORDS[check]
    if check.startswith("dtype("):
        return "dtype", f"expected {check[6:-1]}, got {failure_case}"
    if check.startswith("coerce_dtype("):
        return "dtype", f"value {failure_case!r} cannot be read as {check[13:-1]}"
    return check, f"failed for value {failure_case!r}"


def _empty_quarantine(columns: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype="string") for c in columns})
    frame[SOURCE_FILE] = pd.Series(dtype="string")
    frame[SOURCE_ROW] = pd.Series(dtype="int64")
    for name in QUARANTINE_COLUMNS:
        frame[name] = pd.Series(dtype="string")
    return frame


def _parse_numeric(
    data: pd.DataFrame, dataset: DatasetSchema, source: str
) -> tuple[pd.DataFrame, list[tuple[object, str, str, str]], list[DatasetFailure]]:
    """Numbers that arrive as text: parse what parses; the rest are row failures, or a
    dataset failure when most of the column does not parse."""
    row_failures: list[tuple[object, str, str, str]] = []
    failures: list[DatasetFailure] = []
    for column in dataset.numeric_columns():
        if column not in data.columns or pd.api.types.is_numeric_dtype(data[column]):
            continue
        original = data[column]
        parsed = pd.to_numeric(original, errors="coerce")
        bad = original.notna() & parsed.isna()
        present = int(original.notna().sum())
        if present and bad.sum() > DTYPE_DRIFT_SHARE * present:
            failures.append(
                DatasetFailure(
                    source,
                    column,
                    "dtype",
                    f"expected numbers, but {int(bad.sum())} of {present} values are text "
                    f"(for example {original[bad].iloc[0]!r}): the column changed type",
                )
            )
        for index, value in original[bad].items():
            row_failures.append((index, column, "dtype", f"{value!r} is not a number"))
        data = data.assign(**{column: parsed})
    return data, row_failures, failures


def _validate_file(
    source: str, part: pd.DataFrame, columns: list[str], dataset: DatasetSchema
) -> tuple[pd.DataFrame, list[tuple[object, str, str, str]], list[DatasetFailure]]:
    data = part[[c for c in columns if c in part.columns]]
    data, row_failures, failures = _parse_numeric(data, dataset, source)
    # A value that did not parse is reported once, as a dtype failure, not again as a null.
    data = data.drop(index=[f[0] for f in row_failures])
    try:
        return dataset.schema.validate(data, lazy=True), row_failures, failures
    except pa.errors.SchemaErrors as errors:
        cases = errors.failure_cases
    for case in cases.itertuples(index=False):
        rule, message = _rule_text(str(case.check), case.failure_case)
        column = None if case.column is None or pd.isna(case.column) else str(case.column)
        if case.index is None or pd.isna(case.index):
            if rule == "column_in_schema" or rule == "column_in_dataframe":
                column = str(case.failure_case)
            failures.append(DatasetFailure(source, column, rule, message))
        else:
            value = "" if case.failure_case is None else str(case.failure_case)
            row_failures.append((case.index, column or "", rule, value))
    if failures:
        return data.iloc[0:0], row_failures, _with_rename_hints(failures)
    bad = {index for index, *_ in row_failures}
    remaining = data.drop(index=list(bad), errors="ignore")
    try:
        return dataset.schema.validate(remaining, lazy=True), row_failures, failures
    except pa.errors.SchemaErrors as errors:  # pragma: no cover - rows were already removed
        detail = errors.failure_cases.head(5).to_string()
        failures.append(DatasetFailure(source, None, "schema", f"unexpected failures:\n{detail}"))
        return data.iloc[0:0], row_failures, failures


def _with_rename_hints(failures: list[DatasetFailure]) -> list[DatasetFailure]:
    """A missing column next to an unexpected one that looks like it is most likely a rename."""
    extra = [f.column for f in failures if f.rule == "column_in_schema" and f.column]
    hinted = []
    for failure in failures:
        if failure.rule == "column_in_dataframe" and failure.column and extra:
            close = difflib.get_close_matches(failure.column, extra, n=1, cutoff=0.6)
            if close:
                failure = DatasetFailure(
                    failure.file,
                    failure.column,
                    failure.rule,
                    f"{failure.message}; the file has '{close[0]}': renamed?",
                )
        hinted.append(failure)
    return hinted


def _quarantine_rows(
    part: pd.DataFrame, row_failures: list[tuple[object, str, str, str]]
) -> pd.DataFrame:
    index = [f[0] for f in row_failures]
    rows = part.loc[index].copy()
    data_columns = [c for c in rows.columns if c not in LINEAGE_COLUMNS]
    # Kept as text: the values are exactly what was refused, whatever type they arrived as.
    rows[data_columns] = rows[data_columns].astype("string")
    rows["quarantine_column"] = [f[1] for f in row_failures]
    rows["quarantine_rule"] = [f[2] for f in row_failures]
    rows["quarantine_value"] = [f[3] for f in row_failures]
    return rows.reset_index(drop=True)


def _files_of(valid: pd.DataFrame, mask: np.ndarray | None = None) -> str:
    """The files rows came from, for messages about the dataset as a whole."""
    if SOURCE_FILE not in valid.columns or not len(valid):
        return ALL_FILES
    sources = valid[SOURCE_FILE] if mask is None else valid.loc[mask, SOURCE_FILE]
    return ", ".join(sorted(sources.astype(str).unique())) or ALL_FILES


def _dataset_rules(
    valid: pd.DataFrame, dataset: DatasetSchema, thresholds: QualityThresholds
) -> list[DatasetFailure]:
    failures = []
    where = _files_of(valid)
    if len(valid) < thresholds.min_rows:
        failures.append(
            DatasetFailure(
                where,
                None,
                "min_rows",
                f"{len(valid)} valid rows, fewer than the floor of {thresholds.min_rows}",
            )
        )
    if len(valid) and dataset.target in valid.columns:
        failures += _duplicate_rules(valid, dataset, thresholds)
    if dataset.target in valid.columns and len(valid):
        counts = valid[dataset.target].value_counts()
        if len(counts) < 2:
            only = str(counts.index[0]) if len(counts) else None
            failures.append(
                DatasetFailure(
                    where,
                    dataset.target,
                    "min_classes",
                    f"a single class ({only!r}): a classifier needs at least two",
                )
            )
        else:
            shares = counts / counts.sum()
            for label, share in shares[shares < thresholds.min_class_share].items():
                failures.append(
                    DatasetFailure(
                        where,
                        dataset.target,
                        "min_class_share",
                        f"class {label!r} is {share:.1%} of rows, below the minimum "
                        f"{thresholds.min_class_share:.1%}",
                    )
                )
    return failures


def _duplicate_rules(
    valid: pd.DataFrame, dataset: DatasetSchema, thresholds: QualityThresholds
) -> list[DatasetFailure]:
    features = [c for c in dataset.features if c in valid.columns]
    # One 64-bit hash per row instead of a groupby over every feature column.
    feature_hash = pd.util.hash_pandas_object(valid[features], index=False)
    row_hash = feature_hash.to_numpy() ^ pd.util.hash_pandas_object(
        valid[dataset.target], index=False
    ).to_numpy() * np.uint64(0x9E3779B97F4A7C15)
    failures = []
    repeated = pd.Series(row_hash).duplicated().to_numpy()
    duplicates = int(repeated.sum())
    share = duplicates / len(valid)
    if share > thresholds.max_duplicate_share:
        failures.append(
            DatasetFailure(
                _files_of(valid, repeated),
                None,
                "max_duplicate_share",
                f"{duplicates} rows ({share:.1%}) repeat an earlier row exactly, above the "
                f"ceiling of {thresholds.max_duplicate_share:.1%}: was a file landed twice?",
            )
        )
    labels_per_features = (
        pd.DataFrame({"features": feature_hash.to_numpy(), "label": row_hash})
        .groupby("features")["label"]
        .nunique()
    )
    conflicting = labels_per_features[labels_per_features > 1]
    if len(conflicting):
        in_conflict = pd.Series(feature_hash.to_numpy()).isin(conflicting.index).to_numpy()
        rows = int(in_conflict.sum())
        share = rows / len(valid)
        if share > thresholds.max_conflict_share:
            failures.append(
                DatasetFailure(
                    _files_of(valid, in_conflict),
                    dataset.target,
                    "conflicting_labels",
                    f"{rows} rows ({share:.1%}) share identical features but disagree on the "
                    f"label (ceiling {thresholds.max_conflict_share:.1%})",
                )
            )
    return failures


def validate(
    frame: pd.DataFrame,
    dataset: DatasetSchema,
    thresholds: QualityThresholds | None = None,
) -> ValidationReport:
    thresholds = thresholds or QualityThresholds()
    source_columns: dict[str, list[str]] = frame.attrs.get("source_columns", {})
    valid_parts, quarantine_parts, failures = [], [], []
    for source, part in frame.groupby(SOURCE_FILE, sort=False):
        source = str(source)
        columns = source_columns.get(source) or [
            c for c in part.columns if c not in LINEAGE_COLUMNS and part[c].notna().any()
        ]
        valid, row_failures, file_failures = _validate_file(source, part, columns, dataset)
        failures += file_failures
        if row_failures:
            quarantined = _quarantine_rows(part, row_failures)
            quarantine_parts.append(quarantined)
            share = quarantined[SOURCE_ROW].nunique() / len(part)
            if share > thresholds.max_quarantine_share:
                top = quarantined.groupby(["quarantine_column", "quarantine_rule"]).size()
                column, rule = top.idxmax()  # type: ignore[misc,str-unpack]
                count = int(top.max())
                failures.append(
                    DatasetFailure(
                        source,
                        None,
                        "max_quarantine_share",
                        f"{share:.0%} of rows failed row rules, above the ceiling of "
                        f"{thresholds.max_quarantine_share:.0%} (most often column '{column}', "
                        f"rule {rule}, {count} rows): a mostly bad file is refused whole",
                    )
                )
        valid_parts.append(valid.join(part[list(LINEAGE_COLUMNS)]))
    data_columns = list(dataset.schema.columns)
    valid = (
        pd.concat(valid_parts) if valid_parts else pd.DataFrame(columns=data_columns)
    ).reset_index(drop=True)
    quarantined = (
        pd.concat(quarantine_parts, ignore_index=True)
        if quarantine_parts
        else _empty_quarantine(data_columns)
    )
    if not failures:
        failures += _dataset_rules(valid, dataset, thresholds)
    if failures:
        valid = valid.iloc[0:0]
    return ValidationReport(valid, quarantined, failures, rows_in=len(frame))
