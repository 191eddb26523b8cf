"""Small helpers that turn results into Dagster metadata people can read in the UI."""

from typing import Any

import dagster as dg


def markdown_table(frame: Any, max_rows: int = 10) -> dg.MarkdownMetadataValue:
    if frame is None or len(frame) == 0:
        return dg.MetadataValue.md("_none_")
    return dg.MetadataValue.md(frame.head(max_rows).to_markdown(index=False))


def column_schema(dataset: Any) -> dg.TableSchemaMetadataValue:
    columns = []
    for name, column in dataset.schema.columns.items():
        constraints = [str(c.name or c) for c in column.checks]
        columns.append(
            dg.TableColumn(
                name=str(name),
                type=str(column.dtype),
                description="label" if name == dataset.target else None,
                constraints=dg.TableColumnConstraints(
                    nullable=bool(column.nullable), other=constraints
                ),
            )
        )
    return dg.MetadataValue.table_schema(dg.TableSchema(columns=columns))
