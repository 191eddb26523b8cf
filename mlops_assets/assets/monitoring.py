"""drift_report: each landed file's validated rows against what the champion was trained on."""

import functools
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
from pydantic import Field

from mlops_assets.assets.metadata import markdown_table
from mlops_assets.automation import TRANSIENT_RETRY
from mlops_assets.partitions import landed_files
from mlops_assets.resources.dataset import DatasetSource
from mlops_assets.resources.mlflow import CHAMPION, ModelRegistry

TRAINING_SAMPLE_ARTIFACT = "data/training_sample.parquet"


class DriftConfig(dg.Config):
    psi_threshold: float = Field(default=0.2, description="PSI above this is drift.")
    p_value_threshold: float = Field(
        default=0.01, description="KS / chi-square p-value below this (Bonferroni) is drift."
    )


def champion_training_sample(registry: ModelRegistry) -> tuple[int, pd.DataFrame] | None:
    """The champion's version and the sample of its training data (read-only: shared)."""
    champion = registry.version_for_alias(CHAMPION)
    if champion is None or not champion.run_id:
        return None
    sample = _training_sample(registry.tracking_uri, champion.run_id)
    return None if sample is None else (int(champion.version), sample)


@functools.lru_cache(maxsize=2)
def _training_sample(tracking_uri: str, run_id: str) -> pd.DataFrame | None:
    """Read once per process: every file's validation (label mix) and drift compare with it,
    and `mlops-assets run` runs many files in one process."""
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = download_artifacts(
                run_id=run_id,
                artifact_path=TRAINING_SAMPLE_ARTIFACT,
                dst_path=tmp,
                tracking_uri=tracking_uri,
            )
        except (MlflowException, OSError):
            return None
        return pd.read_parquet(Path(path))


@dg.asset(
    group_name="monitoring",
    kinds={"pandas"},
    partitions_def=landed_files,
    retry_policy=TRANSIENT_RETRY,
    description="Per-feature drift (PSI with KS or chi-square) of each landed file's "
    "validated rows against the champion's training data. trained_model depends on it, so a "
    "change in a file's drift verdict requests retraining through automation.",
    check_specs=[
        dg.AssetCheckSpec(
            "no_drift",
            asset="drift_report",
            description="No feature drifted beyond the thresholds (a warning: it requests "
            "retraining, it does not block it).",
        )
    ],
)
def drift_report(
    context: dg.AssetExecutionContext,
    config: DriftConfig,
    dataset: DatasetSource,
    registry: ModelRegistry,
    validated_dataset: pd.DataFrame,
) -> Iterator[Any]:
    from mlops_assets.drift import DriftThresholds, detect_drift

    reference = champion_training_sample(registry)
    if reference is None:
        yield dg.Output(
            pd.DataFrame(),
            data_version=dg.DataVersion("no-champion"),
            metadata={"compared": False, "reason": "no champion with a training sample yet"},
        )
        yield dg.AssetCheckResult(
            check_name="no_drift", passed=True, metadata={"reason": "no champion yet"}
        )
        return
    version, training = reference
    schema = dataset.dataset_schema()
    features = [
        c for c in schema.features if c in training.columns and c in validated_dataset.columns
    ]
    table, summary = detect_drift(
        training,
        validated_dataset,
        features,
        thresholds=DriftThresholds(
            psi_threshold=config.psi_threshold, p_value_threshold=config.p_value_threshold
        ),
    )
    verdict = ",".join(summary.drifted_features) or "stable"
    context.log.info(f"drift against champion v{version}: {summary.reason}")
    yield dg.Output(
        table,
        # Changes only when the verdict does, so a re-run that finds the same drift (or none)
        # requests no retraining downstream.
        data_version=dg.DataVersion(f"v{version}:{verdict}"),
        metadata={
            "champion_version": version,
            "drifted": len(summary.drifted_features),
            "max_psi": float(summary.max_psi),
            "table": markdown_table(table.sort_values("psi", ascending=False), max_rows=30),
        },
    )
    yield dg.AssetCheckResult(
        check_name="no_drift",
        passed=not summary.any_drift,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "reason": summary.reason,
            "drifted_features": dg.MetadataValue.json(list(summary.drifted_features)),
            "max_psi": float(summary.max_psi),
        },
    )
