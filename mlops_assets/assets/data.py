"""raw_dataset -> validated_dataset (+ quarantined_rows)."""

from collections.abc import Iterator
from typing import Any

import dagster as dg
import pandas as pd
from pydantic import Field

from mlops_assets.assets.metadata import column_schema, markdown_table
from mlops_assets.automation import TRANSIENT_RETRY
from mlops_assets.resources.dataset import DatasetSource
from mlops_assets.resources.mlflow import ModelRegistry

# Metadata key of an observation on validated_dataset that accepts one file's class mix.
ACCEPTED_LABEL_MIX = "accepted_label_mix"


class QualityConfig(dg.Config):
    """Dataset-level thresholds; row-level rules live in the schema."""

    min_rows: int = 30
    min_class_share: float = 0.02
    max_quarantine_share: float = 0.10
    max_duplicate_share: float = 0.05
    max_conflict_share: float = 0.0
    label_mix_alpha: float = Field(
        default=0.001,
        description="A file whose class mix differs from the champion's training data (or, "
        "before there is a champion, from the other files) beyond chance at this level...",
    )
    label_mix_min_shift: float = Field(
        default=0.20,
        description="...and by at least this share of rows (total variation distance) is "
        "refused as a label shift.",
    )
    label_mix_min_rows: int = Field(
        default=50, description="Files with fewer valid rows are not judged on their mix."
    )
    accept_label_mix: list[str] = Field(
        default=[],
        description="Files whose class mix is right as it is, for this run (`mlops-assets "
        "accept-labels FILE` records it for good).",
    )


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
    registry: ModelRegistry,
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
    if report.passed:
        report.refuse(_label_shifts(context, config, registry, raw_dataset, report.valid, schema))
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


def accepted_label_mixes(instance: dg.DagsterInstance) -> set[str]:
    """What `mlops-assets accept-labels` recorded: observations on validated_dataset."""
    records = instance.fetch_observations(dg.AssetKey("validated_dataset"), limit=10_000).records
    accepted = set()
    for record in records:
        observation = record.asset_observation
        entry = observation.metadata.get(ACCEPTED_LABEL_MIX) if observation else None
        if entry is not None:
            accepted.add(str(entry.value))
    return accepted


def _label_shifts(
    context: dg.AssetExecutionContext,
    config: QualityConfig,
    registry: ModelRegistry,
    raw: pd.DataFrame,
    valid: pd.DataFrame,
    schema: Any,
) -> list[Any]:
    from mlops_assets.assets.monitoring import champion_training_sample
    from mlops_assets.quality.label_mix import (
        RULE,
        LabelMixPolicy,
        acceptance_key,
        class_counts,
        class_counts_by_file,
        label_shifts,
    )
    from mlops_assets.quality.validate import DatasetFailure
    from mlops_assets.sources import SOURCE_FILE

    hashes: dict[str, str] = raw.attrs.get("source_sha256", {})
    accepted = accepted_label_mixes(context.instance) | {
        acceptance_key(name, hashes.get(name, "")) for name in config.accept_label_mix
    }
    policy = LabelMixPolicy(
        alpha=config.label_mix_alpha,
        min_shift=config.label_mix_min_shift,
        min_rows=config.label_mix_min_rows,
        accepted=frozenset(accepted),
    )
    per_file = class_counts_by_file(valid, SOURCE_FILE, schema.target)
    champion = champion_training_sample(registry)
    reference, name = None, ""
    if champion is not None and schema.target in champion[1].columns:
        reference = class_counts(champion[1][schema.target])
        name = f"champion v{champion[0]}'s training sample"
    shifts = label_shifts(per_file, hashes, reference, name, policy)
    for shift in shifts:
        context.log.warning(f"{shift.file}: label shift: {shift.message()}")
    return [DatasetFailure(s.file, schema.target, RULE, s.message()) for s in shifts]
