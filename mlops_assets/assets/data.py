"""raw_dataset -> validated_dataset (+ quarantined_rows)."""

from collections.abc import Iterator
from typing import Any

import dagster as dg
import pandas as pd
from pydantic import Field

from mlops_assets.assets.metadata import column_schema, markdown_table
from mlops_assets.automation import TRANSIENT_RETRY
from mlops_assets.partitions import landed_files
from mlops_assets.resources.dataset import DatasetSource
from mlops_assets.resources.mlflow import ModelRegistry

# From this size (about 25,000 rows of CSV) reading a file takes long enough to import
# scikit-learn beside it.
PRELOAD_TRAINING_BYTES = 5_000_000
# Metadata key of an observation on validated_dataset that accepts one file's class mix.
ACCEPTED_LABEL_MIX = "accepted_label_mix"
# Metadata key of a validated partition's class counts: what the other files are compared with
# before there is a champion.
CLASS_COUNTS = "class_counts"


class QualityConfig(dg.Config):
    """One file's thresholds; row-level rules live in the schema, and the rules that only make
    sense across files (enough rows, classes, duplicates) are trained_model's `training_set`."""

    max_quarantine_share: float = Field(
        default=0.10, description="A file with a larger share of bad rows is refused whole."
    )
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
    partitions_def=landed_files,
    retry_policy=TRANSIENT_RETRY,
    description="One landed CSV or Parquet file per partition, one row per input row, tagged "
    "with its source file and line; the bundled breast cancer data while the landing folder "
    "is empty. The data version is the file's content hash.",
    check_specs=[
        dg.AssetCheckSpec(
            "files_readable",
            asset="raw_dataset",
            description="The landed file parses as the table its name promises.",
        )
    ],
)
def raw_dataset(context: dg.AssetExecutionContext, dataset: DatasetSource) -> Iterator[Any]:
    from mlops_assets.preload import TRAINING, preloading
    from mlops_assets.sources import UnreadableFileError

    # A large file takes long enough to read for trained_model's first imports to be done
    # beside it, rather than at the start of training.
    large = dataset.partition_bytes(context.partition_key) >= PRELOAD_TRAINING_BYTES
    try:
        with preloading(TRAINING, enabled=large):
            raw = dataset.read_partition(context.partition_key, progress=context.log.info)
    except UnreadableFileError as error:
        yield dg.AssetCheckResult(
            check_name="files_readable",
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"file": error.path.name, "reason": error.reason},
        )
        # Only this file's partition fails; the file stays where it is until it is replaced
        # (new bytes re-materialize the partition) or removed (the partition is retired).
        raise dg.Failure(
            description=f"{error.path.name}: unreadable: {error.reason}",
            metadata={"file": error.path.name, "reason": error.reason},
            allow_retries=False,
        ) from error
    yield dg.AssetCheckResult(
        check_name="files_readable", passed=True, metadata={"file": context.partition_key}
    )
    frame = raw.frame
    target = dataset.dataset_schema().target
    classes = frame[target].value_counts(dropna=False).to_dict() if target in frame.columns else {}
    [source] = raw.sources
    yield dg.Output(
        frame,
        data_version=dg.DataVersion(raw.fingerprint),
        metadata={
            "dagster/row_count": len(frame),
            "columns": len(frame.columns) - 2,
            "file": source.name,
            "bytes": source.size,
            "sha256": source.sha256,
            "demo_data": raw.is_demo,
            "class_distribution": dg.MetadataValue.json(
                {str(k): int(v) for k, v in classes.items()}
            ),
            "preview": markdown_table(frame, max_rows=5),
        },
    )


@dg.multi_asset(
    outs={
        "validated_dataset": dg.AssetOut(
            group_name="data",
            kinds={"pandas", "pandera"},
            description="One landed file's rows that pass the Pandera schema and the file's rules "
            "(columns, dtypes, share of bad rows, label mix). A file that fails fails its own "
            "partition and stores nothing: training keeps its last passing version, if any.",
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
            description="Columns, dtypes, quarantine share and label mix of the file all pass.",
        ),
        dg.AssetCheckSpec(
            "rows_reconcile",
            asset="validated_dataset",
            blocking=True,
            description="rows in = rows validated + rows quarantined.",
        ),
    ],
    name="validation",
    partitions_def=landed_files,
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
    thresholds = QualityThresholds(max_quarantine_share=config.max_quarantine_share)
    report = validate(raw_dataset, schema, thresholds, dataset_rules=False)
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
            CLASS_COUNTS: dg.MetadataValue.json(_class_counts(report.valid, schema.target)),
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


def _class_counts(valid: pd.DataFrame, target: str) -> dict[str, int]:
    if target not in valid.columns:
        return {}
    return {str(k): int(v) for k, v in valid[target].value_counts().sort_index().items()}


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


def other_files_class_counts(
    instance: dg.DagsterInstance, partitions: list[str], exclude: str
) -> dict[str, pd.Series]:
    """The class counts of the other landed files' latest passing validations, from their
    materialization metadata (newest first, one per partition)."""
    wanted = set(partitions) - {exclude}
    if not wanted:
        return {}
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("validated_dataset")),
        limit=4 * len(wanted) + 100,
    ).records
    found: dict[str, pd.Series] = {}
    for record in records:
        event = record.asset_materialization
        key = event.partition if event else None
        if event is None or key not in wanted or key in found:
            continue
        counts = event.metadata.get(CLASS_COUNTS)
        if counts is not None and isinstance(counts.value, dict):
            found[key] = pd.Series(counts.value, dtype="int64").sort_index()
    return found


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
    this = class_counts_by_file(valid, SOURCE_FILE, schema.target)
    champion = champion_training_sample(registry)
    reference, name = None, ""
    per_file = dict(this)
    if champion is not None and schema.target in champion[1].columns:
        reference = class_counts(champion[1][schema.target])
        name = f"champion v{champion[0]}'s training sample"
    else:
        partitions = context.instance.get_dynamic_partitions(landed_files.name)
        others = other_files_class_counts(context.instance, partitions, context.partition_key)
        per_file.update({f: c for f, c in others.items() if f not in this})
    shifts = [s for s in label_shifts(per_file, hashes, reference, name, policy) if s.file in this]
    for shift in shifts:
        context.log.warning(f"{shift.file}: label shift: {shift.message()}")
    return [DatasetFailure(s.file, schema.target, RULE, s.message()) for s in shifts]
