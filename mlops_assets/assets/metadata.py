"""Small helpers that turn results into Dagster metadata people can read in the UI."""

from typing import Any

import dagster as dg


def markdown_table(frame: Any, max_rows: int = 10) -> dg.MarkdownMetadataValue:
    if frame is None or len(frame) == 0:
        return dg.MetadataValue.md("_none_")
    # Scores to four decimals: more digits than the data support only make tables hard to read.
    return dg.MetadataValue.md(frame.head(max_rows).round(4).to_markdown(index=False))


def score(value: Any, digits: int = 4) -> float:
    """A metric as the UI shows and plots it: a holdout of a few hundred rows does not support
    sixteen digits. Significant digits, so a small p-value stays readable."""
    return float(f"{float(value):.{digits}g}")


def scores(values: dict[str, Any]) -> dict[str, float]:
    return {key: score(value) for key, value in values.items()}


_BOUNDS = {
    "greater_than_or_equal_to": ">=",
    "greater_than": ">",
    "less_than_or_equal_to": "<=",
    "less_than": "<",
    "equal_to": "==",
    "not_equal_to": "!=",
}


def describe_check(check: Any) -> str:
    """A Pandera check as a constraint a reader takes in at a glance ('>= 0', 'in {a, b}')."""
    name = str(getattr(check, "name", None) or check)
    stats = dict(getattr(check, "statistics", None) or {})
    if name in _BOUNDS and len(stats) == 1:
        return f"{_BOUNDS[name]} {next(iter(stats.values()))}"
    if name == "in_range" and {"min_value", "max_value"} <= stats.keys():
        low = "<=" if stats.get("include_min", True) else "<"
        high = "<=" if stats.get("include_max", True) else "<"
        return f"{stats['min_value']} {low} x {high} {stats['max_value']}"
    if name in {"isin", "notin"} and stats:
        values = sorted(map(str, next(iter(stats.values()))))
        shown = ", ".join(values[:8]) + (", ..." if len(values) > 8 else "")
        return f"{'in' if name == 'isin' else 'not in'} {{{shown}}}"
    return name


def column_schema(dataset: Any) -> dg.TableSchemaMetadataValue:
    columns = []
    for name, column in dataset.schema.columns.items():
        constraints = [describe_check(c) for c in column.checks]
        columns.append(
            dg.TableColumn(
                name=str(name),
                type=str(column.dtype),
                description="label" if name == dataset.target else None,
                constraints=dg.TableColumnConstraints(
                    nullable=bool(column.nullable),
                    unique=bool(column.unique),
                    other=constraints,
                ),
            )
        )
    return dg.MetadataValue.table_schema(dg.TableSchema(columns=columns))
