"""Validate a raw frame against a dataset schema, file by file.

Row-level failures (a null where none is allowed, a value out of range or not finite, a label
outside the known classes, text in a numeric column) move the row to quarantine with its reason.
Dataset-level failures (a missing, extra or mistyped column, too few rows, one class, a file
that is mostly bad) are collected, all at once, into the report: the caller refuses the data.
"""

import copy
import difflib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pandera.pandas as pa

from mlops_assets.quality import column_rules
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

    def refuse(self, failures: list[DatasetFailure]) -> None:
        """Add failures found after the rules above (the label mix): nothing is kept valid."""
        if failures:
            self.failures += failures
            self.valid = self.valid.iloc[0:0]

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


ROW_FAILURE_COLUMNS = ("index", *QUARANTINE_COLUMNS)


def _row_failures(index: object, column: object, rule: object, value: object) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "index": index,
            "quarantine_column": column,
            "quarantine_rule": rule,
            "quarantine_value": value,
        }
    )


def _no_row_failures() -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series(dtype=object) for name in ROW_FAILURE_COLUMNS})


def _parse_numeric(
    data: pd.DataFrame, dataset: DatasetSchema, source: str
) -> tuple[pd.DataFrame, list[pd.DataFrame], list[DatasetFailure]]:
    """Numbers that arrive as text: parse what parses; the rest are row failures, or a
    dataset failure when most of the column does not parse."""
    row_failures: list[pd.DataFrame] = []
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
        if bad.any():
            values = [f"{value!r} is not a number" for value in original[bad]]
            row_failures.append(_row_failures(original.index[bad], column, "dtype", values))
        data = data.assign(**{column: parsed})
    return data, row_failures, failures


def _row_rule(check: str) -> str:
    return "dtype" if check.startswith(("dtype(", "coerce_dtype(")) else check


def _coerced(frame: pd.DataFrame, schema: pa.DataFrameSchema) -> pd.DataFrame:
    """Coerce only if a column still differs from its schema dtype (pandera leaves a column
    as it was when some of its values could not be coerced; those rows are gone now)."""
    stale = [
        name
        for name, column in schema.columns.items()
        if column.dtype is not None
        and name in frame.columns
        and str(frame[name].dtype) != str(column.dtype)
    ]
    return schema.coerce_dtype(frame) if stale else frame


def _for_pandera(
    schema: pa.DataFrameSchema, data: pd.DataFrame, evaluated: list[str]
) -> pa.DataFrameSchema:
    """What is left for Pandera: structure, dtypes, and the rules of the columns not in
    `evaluated`. It coerces only the columns whose dtype differs: Pandera coerces every column
    when the schema says so, copying each, and most columns of a parsed file already match."""
    differs = {
        name
        for name, column in schema.columns.items()
        if column.dtype is not None
        and name in data.columns
        and str(data[name].dtype) != str(column.dtype)
    }
    columns = {}
    for name, column in schema.columns.items():
        column = copy.copy(column)
        column.coerce = name in differs
        if name in evaluated:
            column.checks = []
            column.nullable = True
        columns[name] = column
    return pa.DataFrameSchema(
        columns,
        checks=schema.checks,
        coerce=False,
        strict=schema.strict,
        name=schema.name,
        metadata=schema.metadata,
    )


def _failure_cases(
    schema: pa.DataFrameSchema, data: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame | None, pa.DataFrameSchema]:
    """The coerced data, Pandera's failure-case table (None when nothing failed), and the
    schema Pandera validated with."""
    evaluated = column_rules.evaluable_columns(schema, data)
    own_errors = {
        name: column_rules.column_errors(schema.columns[name], data[name]) for name in evaluated
    }
    for_pandera = _for_pandera(schema, data, evaluated)
    try:
        # `data` is the caller's own frame (a selection of the file's rows), so Pandera may
        # coerce it in place: its default copy of every column is a second frame at peak.
        coerced = for_pandera.validate(data, lazy=True, inplace=True)
    except pa.errors.SchemaErrors as errors:
        pandera_errors, coerced = errors.schema_errors, errors.data
    else:
        pandera_errors = []
    if not pandera_errors and not any(own_errors.values()):
        return coerced, None, for_pandera
    return coerced, column_rules.failure_cases(schema, pandera_errors, own_errors), for_pandera


def _validate_file(
    source: str, part: pd.DataFrame, columns: list[str], dataset: DatasetSchema
) -> tuple[pd.DataFrame, pd.DataFrame, list[DatasetFailure]]:
    present = [c for c in columns if c in part.columns]
    data = part[present + [c for c in LINEAGE_COLUMNS if c in part.columns]]
    data, parse_failures, failures = _parse_numeric(data, dataset, source)
    if parse_failures:
        # A value that did not parse is reported once, as a dtype failure, not again as a null.
        data = data.drop(index=pd.Index(pd.concat(parse_failures)["index"]))
    # Taken before Pandera coerces `data` in place: a refused file keeps the dtypes it came with.
    refused = data.iloc[0:0]
    coerced, cases, schema = _failure_cases(dataset.validation_schema, data)
    if cases is None:
        rows = pd.concat(parse_failures, ignore_index=True) if parse_failures else None
        return coerced, rows if rows is not None else _no_row_failures(), failures
    at_row = cases["index"].notna()
    for case in cases[~at_row].itertuples(index=False):
        rule, message = _rule_text(str(case.check), case.failure_case)
        column = None if case.column is None or pd.isna(case.column) else str(case.column)
        if rule in ("column_in_schema", "column_in_dataframe"):
            column = str(case.failure_case)
        failures.append(DatasetFailure(source, column, rule, message))
    found = cases[at_row]
    # A null in a non-nullable column also fails its value checks (ignore_na is off there);
    # report it once, as not_nullable.
    found = found[~(found["failure_case"].isna() & (found["check"] != "not_nullable"))]
    checks = found["check"].astype(str)
    rules = checks.map({c: _row_rule(c) for c in checks.unique()})
    values = found["failure_case"].map(lambda v: "" if v is None else str(v))
    row_failures = pd.concat(
        [
            *parse_failures,
            _row_failures(
                found["index"].to_numpy(),
                found["column"].fillna("").to_numpy(),
                rules.to_numpy(),
                values.to_numpy(),
            ),
        ],
        ignore_index=True,
    )
    if failures:
        return refused, row_failures, _explained(failures, source, len(dataset.schema.columns))
    remaining = coerced.drop(index=pd.Index(pd.unique(found["index"].to_numpy())), errors="ignore")
    return _coerced(remaining, schema), row_failures, failures


def _explained(failures: list[DatasetFailure], source: str, expected: int) -> list[DatasetFailure]:
    """Failures sorted by column, with rename hints, and one line up front when the file lacks
    most of the schema's columns: then it is most likely another dataset's file, and forty
    missing-column lines would hide that."""
    hinted = sorted(_with_rename_hints(failures), key=lambda f: (f.column or "", f.rule))
    missing = sum(f.rule == "column_in_dataframe" for f in failures)
    if expected and missing > expected / 2:
        summary = DatasetFailure(
            source,
            None,
            "other_dataset",
            f"has {expected - missing} of the schema's {expected} columns: is it a file of "
            "another dataset? Keep each dataset's files in its own landing folder "
            "(MLOPS_LANDING_DIR) with its schema (MLOPS_SCHEMA)",
        )
        return [summary, *hinted]
    return hinted


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


def _quarantine_rows(part: pd.DataFrame, row_failures: pd.DataFrame) -> pd.DataFrame:
    rows = part.loc[row_failures["index"].to_numpy()].reset_index(drop=True)
    data_columns = [c for c in rows.columns if c not in LINEAGE_COLUMNS]
    # Kept as text: the values are exactly what was refused, whatever type they arrived as.
    rows = rows.astype({c: "string" for c in data_columns})
    for name in QUARANTINE_COLUMNS:
        rows[name] = pd.array(row_failures[name].to_numpy(), dtype="string")
    return rows


def _files_of(valid: pd.DataFrame, mask: np.ndarray | None = None) -> str:
    """The files rows came from, for messages about the dataset as a whole."""
    if SOURCE_FILE not in valid.columns or not len(valid):
        return ALL_FILES
    sources = valid[SOURCE_FILE] if mask is None else valid.loc[mask, SOURCE_FILE]
    if isinstance(sources.dtype, pd.CategoricalDtype):
        names = sources.cat.categories[pd.unique(sources.cat.codes.to_numpy())]
    else:
        names = sources.unique()
    return ", ".join(sorted(str(n) for n in names)) or ALL_FILES


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
    # A repeated row or a conflict needs repeated features: usually there are none, and one
    # pass over the feature hashes settles both rules.
    repeats = feature_hash.duplicated(keep=False).to_numpy()
    if not repeats.any():
        return []
    row_hash = feature_hash.to_numpy() ^ pd.util.hash_pandas_object(
        valid[dataset.target], index=False
    ).to_numpy() * np.uint64(0x9E3779B97F4A7C15)
    failures = []
    repeated = np.zeros(len(valid), dtype=bool)
    repeated[repeats] = pd.Series(row_hash[repeats]).duplicated().to_numpy()
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
        pd.DataFrame({"features": feature_hash.to_numpy()[repeats], "label": row_hash[repeats]})
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


def _split_by_file(frame: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    sources = frame[SOURCE_FILE]
    names = (
        sources.cat.categories[sources.cat.codes.unique()]
        if isinstance(sources.dtype, pd.CategoricalDtype)
        else sources.unique()
    )
    if len(names) <= 1:
        # One file (the common case): no split, no copy, the row order kept.
        return [(str(names[0]) if len(names) else "", frame)]
    groups = frame.groupby(SOURCE_FILE, sort=False, observed=True).indices
    return [(str(name), frame.iloc[positions]) for name, positions in groups.items()]


def validate(
    frame: pd.DataFrame,
    dataset: DatasetSchema,
    thresholds: QualityThresholds | None = None,
    dataset_rules: bool = True,
) -> ValidationReport:
    """`dataset_rules=False` checks each file on its own only (a landed file's partition); the
    rules across files are then `training_set_failures`' job, where the files are joined."""
    # Copy-on-write: column selections and row drops below share memory until written to,
    # which halves the peak on large frames.
    with pd.option_context("mode.copy_on_write", True):
        return _validate(frame, dataset, thresholds or QualityThresholds(), dataset_rules)


def training_set_failures(
    frame: pd.DataFrame, dataset: DatasetSchema, thresholds: QualityThresholds
) -> list[DatasetFailure]:
    """The rules that only make sense across the files a model is trained on: enough rows, at
    least two classes and none too rare, no row landed twice, no conflicting labels."""
    with pd.option_context("mode.copy_on_write", True):
        return _dataset_rules(frame, dataset, thresholds)


def _validate(
    frame: pd.DataFrame, dataset: DatasetSchema, thresholds: QualityThresholds, dataset_rules: bool
) -> ValidationReport:
    source_columns: dict[str, list[str]] = frame.attrs.get("source_columns", {})
    valid_parts, quarantine_parts, failures = [], [], []
    for source, part in _split_by_file(frame) if len(frame) else []:
        columns = source_columns.get(source) or [
            c for c in part.columns if c not in LINEAGE_COLUMNS and part[c].notna().any()
        ]
        valid, row_failures, file_failures = _validate_file(source, part, columns, dataset)
        failures += file_failures
        if len(row_failures):
            quarantine_parts.append(_quarantine_rows(part, row_failures))
            share = row_failures["index"].nunique() / len(part)
            if share > thresholds.max_quarantine_share:
                top = row_failures.groupby(["quarantine_column", "quarantine_rule"]).size()
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
        valid_parts.append(valid)
    data_columns = list(dataset.schema.columns)
    if len(valid_parts) == 1:
        valid = valid_parts[0].reset_index(drop=True)
    elif valid_parts:
        valid = pd.concat(valid_parts, ignore_index=True)
    else:
        valid = pd.DataFrame(columns=[*data_columns, *LINEAGE_COLUMNS])
    quarantined = (
        pd.concat(quarantine_parts, ignore_index=True)
        if quarantine_parts
        else _empty_quarantine(data_columns)
    )
    if not failures and dataset_rules:
        failures += _dataset_rules(valid, dataset, thresholds)
    if failures:
        valid = valid.iloc[0:0]
    return ValidationReport(valid, quarantined, failures, rows_in=len(frame))
