"""Element-wise column rules (nulls, ranges, finiteness, allowed values) without Pandera's
per-check overhead.

Pandera handles every failing check through general machinery: a copy of its failures, a message
listing them, an exception per column, the failure-case table rebuilt for every exception. With a
few bad values in every column of millions of rows, that is most of the validation time, while
the checks themselves are one vectorised comparison each.

The rules stay the schema's: a column is evaluated here only if it is numeric, already has its
schema dtype (Pandera would neither coerce nor flag it) and every one of its checks equals, by
Pandera's own check equality, the builtin check of that name with those statistics, or the
platform's `finite`. Anything else (a custom check, an option such as `groupby` or
`raise_warning`, a column to coerce) stays with Pandera. Failures come back as Pandera's
SchemaError objects, placed where Pandera would have collected them and consolidated by Pandera's
own function, so the failure-case table is the one a pure Pandera validation produces.
"""

import operator
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.api.function_dispatch import Dispatcher
from pandera.backends.pandas.error_formatters import (
    consolidate_failure_cases,
    reshape_failure_cases,
)
from pandera.errors import SchemaError, SchemaErrorReason

from mlops_assets.quality.schema import FINITE, finite_or_null

Rule = Callable[[pd.Series, Mapping[str, Any]], Any]


def _in_range(series: pd.Series, statistics: Mapping[str, Any]) -> Any:
    low = operator.le if statistics["include_min"] else operator.lt
    high = operator.le if statistics["include_max"] else operator.lt
    return low(statistics["min_value"], series) & high(series, statistics["max_value"])


# The expressions of Pandera's builtin checks (pandera/backends/pandas/builtin_checks.py).
RULES: dict[str, Rule] = {
    "equal_to": lambda series, s: series == s["value"],
    "not_equal_to": lambda series, s: series != s["value"],
    "greater_than": lambda series, s: series > s["min_value"],
    "greater_than_or_equal_to": lambda series, s: series >= s["min_value"],
    "less_than": lambda series, s: series < s["max_value"],
    "less_than_or_equal_to": lambda series, s: series <= s["max_value"],
    "in_range": _in_range,
    "isin": lambda series, s: series.isin(s["allowed_values"]),
    "notin": lambda series, s: ~series.isin(s["forbidden_values"]),
    FINITE: lambda series, s: finite_or_null(series),
}
_FLAGS = ("include_min", "include_max")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool | np.bool_
    )


def _numeric_statistics(statistics: Mapping[str, Any]) -> bool:
    """Comparisons with numbers only: anything else may raise inside Pandera, which reports
    that as a failure of its own kind."""
    for name, value in statistics.items():
        if name in _FLAGS:
            continue
        values = value if isinstance(value, list | tuple | set | frozenset) else [value]
        if not all(_is_number(v) for v in values):
            return False
    return True


def _is_builtin(check: pa.Check) -> bool:
    statistics = check.statistics or {}
    if check.name not in RULES or not _numeric_statistics(statistics):
        return False
    try:
        reference = getattr(pa.Check, check.name)(**statistics)
    except (AttributeError, TypeError, ValueError):
        return False
    reference.ignore_na = check.ignore_na
    function = check._check_fn
    if isinstance(function, Dispatcher):
        # Pandera's equality compares a builtin's dispatcher by the code of every function
        # registered with it, and backends register more as they load: a check made before
        # a validation no longer equals one made after. Only builtins have a dispatcher, and
        # its name is the builtin's.
        if not isinstance(reference._check_fn, Dispatcher) or str(function) != str(
            reference._check_fn
        ):
            return False
        reference._check_fn = function
    return bool(reference == check)


def _evaluable(column: pa.Column, series: object) -> bool:
    return (
        isinstance(series, pd.Series)
        and isinstance(series.dtype, np.dtype)
        and series.dtype.kind in "iuf"
        and column.dtype is not None
        and str(series.dtype) == str(column.dtype)
        and not (column.regex or column.unique or column.parsers or column.drop_invalid_rows)
        and column.default is None
        and all(_is_builtin(check) for check in column.checks)
    )


def evaluable_columns(schema: pa.DataFrameSchema, data: pd.DataFrame) -> list[str]:
    """The columns whose nullability and checks `column_errors` evaluates in Pandera's place."""
    if schema.dtype is not None or schema.drop_invalid_rows or not data.columns.is_unique:
        return []
    return [
        name
        for name, column in schema.columns.items()
        if name in data.columns and _evaluable(column, data[name])
    ]


def _error(
    column: pa.Column,
    series: pd.Series,
    failed: np.ndarray,
    check: pa.Check | str,
    index: int | None,
    ignore_na: bool,
    reason: SchemaErrorReason,
) -> SchemaError:
    return SchemaError(
        column,
        series,
        f"column '{column.name}' failed {check}",
        failure_cases=reshape_failure_cases(series[failed], ignore_na=ignore_na),
        check=check,
        check_index=index,
        reason_code=reason,
        column_name=column.name,
    )


def column_errors(column: pa.Column, series: pd.Series) -> list[SchemaError]:
    """One column's failures in Pandera's order: nulls, then each check in turn. A check that
    ignores nulls fails only non-null values, as Pandera's (which drops nulls first) does."""
    errors = []
    null = series.isna().to_numpy()
    if not column.nullable and null.any():
        reason = SchemaErrorReason.SERIES_CONTAINS_NULLS
        errors.append(_error(column, series, null, "not_nullable", None, False, reason))
    for index, check in enumerate(column.checks):
        with np.errstate(invalid="ignore"):
            passed = np.asarray(RULES[check.name](series, check.statistics), dtype=bool)
        failed = ~passed & ~null if check.ignore_na else ~passed
        if failed.any():
            reason = SchemaErrorReason.DATAFRAME_CHECK
            errors.append(_error(column, series, failed, check, index, check.ignore_na, reason))
    return errors


def _phase(error: SchemaError, position: Mapping[Any, int]) -> tuple[int, int]:
    """Where Pandera collects an error: structure and coercion first, then column by column in
    schema order, then dataframe-wide checks."""
    if isinstance(error.schema, pa.Column) and (
        error.reason_code is not SchemaErrorReason.DATATYPE_COERCION
    ):
        return 1, position.get(error.column_name, -1)
    if error.reason_code in (SchemaErrorReason.DATAFRAME_CHECK, SchemaErrorReason.CHECK_ERROR):
        return 2, 0
    return 0, 0


def failure_cases(
    schema: pa.DataFrameSchema,
    pandera_errors: list[SchemaError],
    own_errors: Mapping[str, list[SchemaError]],
) -> pd.DataFrame:
    """Pandera's failure-case table for all errors. Its row order comes from an unstable sort
    of the collected errors, so they are merged in the order Pandera would have collected them."""
    position = {name: i for i, name in enumerate(schema.columns)}
    own = [error for name in schema.columns for error in own_errors.get(name, [])]
    merged = sorted([*pandera_errors, *own], key=lambda error: _phase(error, position))
    return consolidate_failure_cases(merged)
