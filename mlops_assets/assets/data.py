"""raw_dataset -> validated_dataset (+ quarantined_rows)."""

from collections.abc import Iterator
from typing import Any

import dagster as dg
import pandas as pd

from mlops_assets.assets.metadata import column_schema, markdown_table
from mlops_assets.automation import TRANSIENT_RETRY
from mlops_assets.resources.dataset import DatasetSource


class QualityConfig(dg.Config):
    """Dataset-level thresholds; row-level rules live in the schema."""

    min_rows: int = 30
    min_class_share: float = 0.02
    max_quarantine_share: float = 0.10
    max_duplicate_share: float = 0.05
    max_conflict_share: float = 0.0


@dg.asset(
    group_name="data",
    kinds={"pandas"},
    retry_policy=TRANSIENT_RETRY,
    description="Every CSV and Parquet file in the landing folder, one row per input row, "
    "tagged with its source file and line; the bundled breast cancer data when the folder "
    "is empty.",
    check_specs=[
        dg.AssetCheckSpec(
            "files_readable",
            asset="raw_dataset",
            description="Every landing file parses; unreadable ones are moved to quarantine.",
        )
    ],
)
def raw_dataset(context: dg.AssetExecutionContext, dataset: DatasetSource) -> Iterator[Any]:
    raw = dataset.read(progress=context.log.info)
    moved = []
    for error in raw.unreadable:
        target = dataset.quarantine_file(error.path, error.reason)
        context.log.warning(f"quarantined unreadable file {error}; moved to {target}")
        moved.append({"file": error.path.name, "reason": error.reason, "moved_to": str(target)})
    yield dg.AssetCheckResult(
        check_name="files_readable",
        passed=not moved,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"unreadable_files": len(moved), "files": markdown_table(pd.DataFrame(moved))},
    )
    if raw.frame.empty:
        raise dg.Failure(
            description="no readable rows in the landing folder: "
            + "; ".join(f"{m['file']}: {m['reason']}" for m in moved),
            allow_retries=False,
        )
    frame = raw.frame
    target = dataset.dataset_schema().target
    classes = frame[target].value_counts(dropna=False).to_dict() if target in frame.columns else {}
    sources = pd.DataFrame(
        [
            {"file": s.name, "rows": s.rows, "bytes": s.size, "sha256": s.sha256[:16]}
            for s in raw.sources
        ]
    )
    yield dg.Output(
        frame,
        data_version=dg.DataVersion(raw.fingerprint),
        metadata={
            "dagster/row_count": len(frame),
            "columns": len(frame.columns) - 2,
            "fingerprint": raw.fingerprint,
            "demo_data": raw.is_demo,
            "class_distribution": dg.MetadataValue.json(
                {str(k): int(v) for k, v in classes.items()}
            ),
            "sources": markdown_table(sources, max_rows=50),
            "preview": markdown_table(frame, max_rows=5),
        },
    )


@dg.multi_asset(
    outs={
        "validated_dataset": dg.AssetOut(
            group_name="data",
            kinds={"pandas", "pandera"},
            description="Rows that pass the Pandera schema and the dataset-level rules. A dataset "
            "that fails is not stored: downstream keeps reading the last good one.",
        ),
        "quarantined_rows": dg.AssetOut(
            group_name="data",
            kinds={"pandas"},
            description="Rows refused by a row-level rule, as they arrived, one line per failure "
            "with the column, rule and value.",
        ),
    },
    check_specs=[
        dg.AssetCheckSpec(
            "dataset_rules",
            asset="validated_dataset",
            blocking=True,
            description="Columns, dtypes, row floor, classes and quarantine share all pass.",
        ),
        dg.AssetCheckSpec(
            "rows_reconcile",
            asset="validated_dataset",
            blocking=True,
            description="rows in = rows validated + rows quarantined.",
        ),
    ],
    name="validation",
    retry_policy=TRANSIENT_RETRY,
)
def validation(
    context: dg.AssetExecutionContext,
    config: QualityConfig,
    dataset: DatasetSource,
    raw_dataset: pd.DataFrame,
) -> Iterator[Any]:
    from mlops_assets.quality.validate import QualityThresholds, validate

    schema = dataset.dataset_schema()
    thresholds = QualityThresholds(
        min_rows=config.min_rows,
        min_class_share=config.min_class_share,
        max_quarantine_share=config.max_quarantine_share,
        max_duplicate_share=config.max_duplicate_share,
        max_conflict_share=config.max_conflict_share,
    )
    report = validate(raw_dataset, schema, thresholds)
    sample = report.quarantined.head(20)
    if not report.passed:
        failures = report.failure_table()
        yield dg.AssetCheckResult(
            check_name="dataset_rules",
            asset_key="validated_dataset",
            passed=False,
            metadata={"failures": markdown_table(failures, max_rows=100)},
        )
        raise dg.Failure(
            description=report.describe_failures(),
            metadata={
                "failures": markdown_table(failures, max_rows=100),
                "quarantined_sample": markdown_table(sample),
            },
            # Bad data stays bad on a retry; only transient errors are worth another attempt.
            allow_retries=False,
        )
    yield dg.Output(
        report.valid,
        output_name="validated_dataset",
        metadata={
            "dagster/row_count": report.rows_valid,
            "dagster/column_schema": column_schema(schema),
            "schema": schema.name,
            "schema_fingerprint": schema.fingerprint,
            "rows_in": report.rows_in,
            "rows_quarantined": report.rows_quarantined,
        },
    )
    yield dg.Output(
        report.quarantined,
        output_name="quarantined_rows",
        metadata={
            "dagster/row_count": len(report.quarantined),
            "rows_quarantined": report.rows_quarantined,
            "sample": markdown_table(sample),
        },
    )
    yield dg.AssetCheckResult(
        check_name="dataset_rules",
        asset_key="validated_dataset",
        passed=True,
        metadata={"schema": schema.name, "rows_validated": report.rows_valid},
    )
    yield dg.AssetCheckResult(
        check_name="rows_reconcile",
        asset_key="validated_dataset",
        passed=report.reconciles,
        metadata={
            "rows_in": report.rows_in,
            "rows_validated": report.rows_valid,
            "rows_quarantined": report.rows_quarantined,
        },
    )
