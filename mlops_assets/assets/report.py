"""model_report: plots and a static HTML report for each registered version.

Downstream of registered_model, so drawing (matplotlib costs seconds to import) happens after
the champion alias has moved, not before."""

import base64
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd

from mlops_assets.automation import TRANSIENT_RETRY
from mlops_assets.resources.io import StoredFrame
from mlops_assets.resources.mlflow import ModelRegistry, dagster_mlflow_run


def _image_markdown(name: str, path: Path) -> dg.MarkdownMetadataValue:
    encoded = base64.b64encode(path.read_bytes()).decode()
    return dg.MetadataValue.md(f"![{name}](data:image/png;base64,{encoded})")


# The holdout's labels, the version's predictions and class probabilities (None without
# predict_proba), and its classes in the probabilities' column order.
HeldOut = tuple[pd.Series, np.ndarray, np.ndarray | None, list[Any]]


def stored_predictions(
    registered_model: dict[str, Any], trained_model: dict[str, Any]
) -> HeldOut | None:
    """The holdout as registered_model stored it when it scored the artifact; None where the
    predictions are missing or belong to another training run (a record written before they
    were stored)."""
    from mlops_assets.resources.io import read_frame
    from mlops_assets.training.evaluate import from_holdout_table

    stored = registered_model.get("holdout_predictions")
    if not (
        stored
        and registered_model.get("run_id") == trained_model["run_id"]
        and Path(stored).is_file()
    ):
        return None
    labels, predicted, proba = from_holdout_table(read_frame(Path(stored)))
    return labels, predicted, proba, list(registered_model["classes"])


def predicted_again(
    registered_model: dict[str, Any],
    trained_model: dict[str, Any],
    registry: ModelRegistry,
    frame: pd.DataFrame,
) -> HeldOut:
    """What `stored_predictions` returns, from loading the version and running it over the
    holdout rebuilt from `frame`."""
    from mlops_assets.training.evaluate import predict_proba_and_score
    from mlops_assets.training.sweep import holdout_for

    split = holdout_for(trained_model, frame)
    model = registry.load_model(int(registered_model["version"]))
    predicted, _, proba = predict_proba_and_score(model, split.test_x, split.test_y)
    return split.test_y, predicted, proba, list(model.classes_)


def draw_plots(
    classes: list[Any],
    labels: pd.Series,
    predicted: np.ndarray,
    proba: np.ndarray | None,
    folder: Path,
) -> dict[str, Path]:
    from mlops_assets.reporting import confusion_matrix_png, roc_png

    plots = {
        "confusion_matrix": confusion_matrix_png(
            labels, predicted, classes, folder / "confusion_matrix.png"
        )
    }
    if proba is not None:
        roc = roc_png(proba, labels, folder / "roc.png", classes=classes)
        if roc is not None:
            plots["roc"] = roc
    return plots


@dg.asset(
    group_name="model",
    kinds={"mlflow", "html"},
    retry_policy=TRANSIENT_RETRY,
    description="For each registered version: confusion matrix and ROC on the holdout, and a "
    "static HTML report (data summary, metrics vs champion and baseline, gate decision, "
    "per-class table, plots), in MLflow and under MLOPS_HOME/reports.",
)
def model_report(
    context: dg.AssetExecutionContext,
    registry: ModelRegistry,
    mlflow_tracking: dg.ResourceParam[Any],
    registered_model: dict[str, Any],
    trained_model: dict[str, Any],
    validated_dataset: StoredFrame,
) -> dg.Output[dict[str, Any]]:
    import mlflow

    from mlops_assets.assets.model import trained_on
    from mlops_assets.reporting import model_report_html, per_class_report, summarize_data

    number = int(registered_model["version"])
    held = stored_predictions(registered_model, trained_model)
    if held is None:
        frame = trained_on(trained_model, validated_dataset)
        held = predicted_again(registered_model, trained_model, registry, frame)
    else:
        # The data summary counts rows and classes: the label column is all it reads.
        frame = trained_on(trained_model, validated_dataset, [trained_model["target"]])
    truth, predicted, proba, classes = held
    folder = registry.version_dir(number)
    folder.mkdir(parents=True, exist_ok=True)
    plots = draw_plots(classes, truth, predicted, proba, folder)
    labels = sorted(pd.unique(truth))
    html = model_report_html(
        model_name=registry.model_name,
        version=number,
        challenger_metrics=registered_model["challenger_metrics"],
        champion_metrics=registered_model["champion_metrics"],
        baseline_metrics=trained_model["baseline_metrics"],
        decision=registered_model["champion"],
        reason=registered_model["reason"],
        data_summary=summarize_data(
            frame,
            trained_model["target"],
            trained_model["features"],
            fingerprint=trained_model["dataset_fingerprint"],
        ),
        per_class=per_class_report(truth, predicted, labels),
        images={name.replace("_", " ").title(): path for name, path in plots.items()},
        champion_version=registered_model["previous_champion"]
        if registered_model["champion"]
        else registered_model["champion_version"],
        gate_details=registered_model["gate_details"],
        links={
            "MLflow run": registry.run_url(trained_model["experiment_id"], trained_model["run_id"]),
            "Model version": registry.version_url(number),
            "Dagster run": registered_model["dagster_run_url"],
        },
    )
    report = folder.with_suffix(".html")
    report.write_text(html)
    with dagster_mlflow_run(mlflow_tracking) as run:
        for path in plots.values():
            mlflow.log_artifact(str(path), "plots")
        mlflow.log_artifact(str(report), "report")
    # A browser will not open a file:// link from an http:// page: link MLflow's view of it.
    report_url = registry.artifact_url(
        run.info.experiment_id, run.info.run_id, f"report/{report.name}"
    )
    context.log.info(f"model report for {registry.model_name} v{number}: {report}")
    return dg.Output(
        {"version": number, "report": str(report), "plots": {k: str(v) for k, v in plots.items()}},
        metadata={
            "version": number,
            "model_report": dg.MetadataValue.path(str(report)),
            "model_report_url": dg.MetadataValue.url(report_url),
            **{name: _image_markdown(name, path) for name, path in plots.items()},
        },
    )
