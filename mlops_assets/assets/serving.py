"""batch_predictions: the files in MLOPS_SCORING_DIR scored by the current champion."""

from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from mlops_assets.assets.metadata import markdown_table
from mlops_assets.automation import TRANSIENT_RETRY
from mlops_assets.resources.dataset import DatasetSource
from mlops_assets.resources.mlflow import ModelRegistry


def score_files(
    frame: pd.DataFrame, dataset: Any, model: Any, model_name: str, version: int
) -> tuple[pd.DataFrame, Any]:
    """Validate scoring rows with the training schema minus the label, predict the valid ones.
    Returns the predictions and the validation report (whose failures refuse the batch)."""
    from mlops_assets.quality.schema import DatasetSchema
    from mlops_assets.quality.validate import QualityThresholds, validate
    from mlops_assets.sources import LINEAGE_COLUMNS

    features_only = DatasetSchema(
        dataset.name, dataset.schema.remove_columns([dataset.target]), dataset.target
    )
    report = validate(frame, features_only, QualityThresholds(min_rows=1))
    if not report.passed or report.valid.empty:
        return pd.DataFrame(), report
    features = report.valid[features_only.features]
    predictions = report.valid[list(LINEAGE_COLUMNS)].copy()
    predictions["prediction"] = model.predict(features)
    if hasattr(model, "predict_proba"):
        predictions["confidence"] = model.predict_proba(features).max(axis=1)
    predictions["model_name"] = model_name
    predictions["model_version"] = version
    return predictions, report


@dg.asset(
    group_name="serving",
    kinds={"pandas", "scikit-learn"},
    retry_policy=TRANSIENT_RETRY,
    description="Every CSV/Parquet file in MLOPS_SCORING_DIR scored by the current champion, "
    "after validation with the training schema minus the label; each prediction records the "
    "model version that made it. Re-runs when the champion or the scoring files change.",
)
def batch_predictions(
    context: dg.AssetExecutionContext,
    dataset: DatasetSource,
    registry: ModelRegistry,
    registered_model: dict[str, Any],
) -> dg.Output[pd.DataFrame]:
    from mlops_assets.sources import read_landing

    version = registered_model.get("champion_version")
    if version is None:
        raise dg.Failure("no champion yet: nothing to score with", allow_retries=False)
    raw = read_landing(Path(dataset.scoring_dir))
    if raw is None:
        context.log.info(f"no files to score in {dataset.scoring_dir}")
        return dg.Output(
            pd.DataFrame(),
            data_version=dg.DataVersion(f"empty@{version}"),
            metadata={"dagster/row_count": 0, "scoring_dir": dataset.scoring_dir},
        )
    if raw.unreadable:
        raise dg.Failure(
            "unreadable scoring file(s): " + "; ".join(str(e) for e in raw.unreadable),
            allow_retries=False,
        )
    model = registry.load_model(int(version))
    predictions, report = score_files(
        raw.frame, dataset.dataset_schema(), model, registry.model_name, int(version)
    )
    if not report.passed:
        raise dg.Failure(
            "scoring input refused: " + report.describe_failures(),
            metadata={"failures": markdown_table(report.failure_table(), max_rows=50)},
            allow_retries=False,
        )
    counts = predictions["prediction"].value_counts().to_dict()
    return dg.Output(
        predictions,
        data_version=dg.DataVersion(f"{raw.fingerprint}@{version}"),
        metadata={
            "dagster/row_count": len(predictions),
            "model_version": int(version),
            "rows_refused": report.rows_quarantined,
            "refused_sample": markdown_table(report.quarantined.head(10)),
            "predicted_classes": dg.MetadataValue.json({str(k): int(v) for k, v in counts.items()}),
            "preview": markdown_table(predictions.head(10)),
        },
    )
