"""The code location: assets, checks, resources and the job, assembled from Settings."""

import warnings

import dagster as dg

# Imported here, the code location's entry, so that in a run's process it comes before the
# thousand modules of MLflow and the assets: skops, imported when a model is saved, finds the
# module of each of scipy.special's 232 ufuncs by walking sys.modules in import order, and the
# earlier scipy.special sits in that order, the sooner each walk ends (measured: importing
# skops 1.23 s -> 0.46 s in a process holding what a run holds). scikit-learn imports it anyway.
import scipy.special  # noqa: F401

# The code server and every run worker load this module: importing this one tunes the garbage
# collector before the modules below and MLflow's (at the run's start) are imported. Dagster
# itself is imported before, by the process that loads this module.
import mlops_assets.collection  # noqa: F401
from mlops_assets.assets.data import raw_dataset, validation
from mlops_assets.assets.model import registered_model, trained_model
from mlops_assets.assets.monitoring import drift_report
from mlops_assets.assets.report import model_report
from mlops_assets.assets.serving import batch_predictions
from mlops_assets.automation import (
    apply_policy,
    build_automation_sensor,
    build_failure_sensor,
    build_landing_sensor,
    build_scoring_sensor,
)
from mlops_assets.progress import LOGGERS
from mlops_assets.resources.dataset import DatasetSource
from mlops_assets.resources.gate import GatePolicy
from mlops_assets.resources.io import LocalParquetIOManager
from mlops_assets.resources.mlflow import ModelRegistry, mlflow_tracking
from mlops_assets.settings import Settings

# The beta APIs used on purpose (data versions on outputs, dagster-mlflow), pinned in uv.lock:
# their notices would otherwise open every run's stderr in the UI, telling a user nothing to do.
for _beta in (
    "Parameter `data_version`",
    "Class `MlFlow`",
    "Dagster resource `mlflow_tracking`",
    "Function `_create_mlflow_run_hook`",
):
    warnings.filterwarnings("ignore", message=f"{_beta}.*", category=dg.BetaWarning)

PIPELINE_JOB = "mlops_pipeline"
ASSET_KEYS = ("raw_dataset", "validated_dataset", "trained_model", "registered_model")

pipeline_job = dg.define_asset_job(
    PIPELINE_JOB,
    selection=dg.AssetSelection.all(),
    description="Landing files (or the demo data) to a registered, gated MLflow model.",
)


def build_resources(settings: Settings) -> dict[str, object]:
    local_store = settings.tracking_uri.startswith("sqlite:")
    return {
        "io_manager": LocalParquetIOManager(base_dir=str(settings.storage_dir)),
        "dataset": DatasetSource(
            landing_dir=str(settings.landing_dir),
            target=settings.target,
            schema_path=str(settings.schema_path) if settings.schema_path else None,
            project_dir=str(settings.project_dir),
            scoring_dir=str(settings.scoring_dir),
        ),
        "gate_policy": GatePolicy(
            floors_json=settings.gate_floors,
            tolerance=settings.gate_tolerance,
            require_significant=settings.gate_require_significant,
            dagster_ui_url=settings.dagster_ui_url,
        ),
        "registry": ModelRegistry(
            tracking_uri=settings.tracking_uri,
            model_name=settings.registered_model_name,
            mlflow_ui_url=settings.mlflow_ui_url,
            reports_dir=str(settings.reports_dir),
        ),
        "mlflow_tracking": mlflow_tracking.configured(
            {
                "experiment_name": settings.experiment_name,
                "mlflow_tracking_uri": settings.tracking_uri,
                "artifact_location": str(settings.artifacts_dir) if local_store else None,
                "extra_tags": {"platform": "mlops-assets"},
            }
        ),
    }


def build_definitions(settings: Settings) -> dg.Definitions:
    # A subprocess per step costs ~10 s of imports here; one process runs the whole graph.
    executor = (
        dg.multiprocess_executor if settings.executor == "multiprocess" else dg.in_process_executor
    )
    return dg.Definitions(
        assets=apply_policy(
            [
                raw_dataset,
                validation,
                drift_report,
                trained_model,
                registered_model,
                model_report,
                batch_predictions,
            ]
        ),
        jobs=[pipeline_job],
        sensors=[
            build_landing_sensor(settings, pipeline_job),
            build_scoring_sensor(settings),
            build_automation_sensor(settings),
            build_failure_sensor(settings),
        ],
        resources=build_resources(settings),
        executor=executor,
        loggers=LOGGERS,
    )


defs = build_definitions(Settings.from_env())
