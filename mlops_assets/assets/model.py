"""trained_model -> registered_model, tracked in MLflow."""

import platform
import tempfile
from collections.abc import Iterator
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
from pydantic import Field

from mlops_assets.assets.metadata import markdown_table, score, scores
from mlops_assets.automation import TRANSIENT_RETRY, latest_data_version
from mlops_assets.preload import preloading
from mlops_assets.resources.dataset import DatasetSource
from mlops_assets.resources.gate import GatePolicy
from mlops_assets.resources.io import StoredFrame, write_frame
from mlops_assets.resources.mlflow import ModelRegistry, dagster_mlflow_run
from mlops_assets.sources import LINEAGE_COLUMNS

TRAINING_SAMPLE = "training_sample.parquet"
FILES_ARTIFACT = "data/files.json"
DRIFT_SAMPLE_ROWS = 100_000
# Exact versions of what the model needs at inference; inferring them costs ~9 s per log.
MODEL_REQUIREMENTS = ("scikit-learn", "skops", "pandas", "numpy", "scipy")


class RandomForestGrid(dg.Config):
    n_estimators: list[int] = Field(
        default=[50, 100, 200],
        description="Forest sizes. Leaves per tree are bounded so a version stays small.",
    )


class HistGradientBoostingGrid(dg.Config):
    # 0.1 gains ~0.005 macro-F1 on a million rows at 5-10x the fit time (more iterations
    # before early stopping); add it here when that is worth paying.
    learning_rate: list[float] = Field(default=[0.3])
    max_leaf_nodes: list[int] = Field(default=[31, 255])
    min_samples_leaf: list[int] = Field(default=[40])
    max_iter: list[int] = Field(
        default=[200], description="Upper bound; early stopping ends sooner on most data."
    )


class TrainingSetRules(dg.Config):
    """Rules on the files joined for training: each file alone passed its own validation."""

    min_rows: int = Field(default=30, description="Fewest valid rows to train on.")
    min_class_share: float = Field(default=0.02, description="Rarest class allowed, as a share.")
    max_duplicate_share: float = Field(
        default=0.05,
        description="Most rows allowed to repeat another exactly (a file landed "
        "twice under two names).",
    )
    max_conflict_share: float = Field(
        default=0.0,
        description="Most rows allowed to share features with another row but not its label.",
    )


class TrainingConfig(dg.Config):
    training_set: TrainingSetRules = Field(default_factory=TrainingSetRules)
    families: list[str] = Field(
        default=["random_forest", "hist_gradient_boosting"],
        description="Model families to compare, each with its grid below; the best by "
        "`metric` wins, the cheapest of those within noise of it when the winner is refit on "
        "the rows it was compared on.",
    )
    random_forest: RandomForestGrid = Field(default_factory=RandomForestGrid)
    hist_gradient_boosting: HistGradientBoostingGrid = Field(
        default_factory=HistGradientBoostingGrid
    )
    metric: str = Field(
        default="f1_macro",
        description="accuracy, balanced_accuracy, f1_macro or roc_auc: picks the best candidate "
        "and decides promotion.",
    )
    test_size: float = Field(default=0.2, description="Share of rows held out for the gate.")
    seed: int = 42
    cv_folds: int = 3
    # Full cross-validation costs folds x candidates fits on two thirds of the rows: 11 s at
    # 9,600 training rows, where the race takes 3 s (choosing on one split).
    full_cv_rows: int = Field(
        default=6_000,
        description="Up to this many training rows every candidate is cross-validated on all "
        "of them; beyond, candidates race by successive halving over row samples.",
    )
    max_search_rows: int = Field(
        default=20_000, description="Rows of the largest sample the race compares on."
    )

    def candidates(self) -> list[Any]:
        from mlops_assets.training.sweep import grid

        grids = {
            "random_forest": self.random_forest.model_dump(),
            "hist_gradient_boosting": self.hist_gradient_boosting.model_dump(),
        }
        unknown = sorted(set(self.families) - set(grids))
        if unknown:
            raise dg.Failure(
                f"unknown model famil{'ies' if len(unknown) > 1 else 'y'} {', '.join(unknown)}: "
                f"choose from {', '.join(grids)}",
                allow_retries=False,
            )
        return [c for family in self.families for c in grid(family, **grids[family])]


class GateConfig(dg.Config):
    """Per-run overrides of the deployment's gate policy (MLOPS_GATE_*); empty = policy."""

    floors: dict[str, float] | None = Field(
        default=None, description='Absolute floor per metric, e.g. {"f1_macro": 0.7}.'
    )
    tolerance: float | None = Field(
        default=None, description="Largest drop on any tracked metric that still promotes."
    )
    class_tolerance: float | None = Field(
        default=None, description="Largest drop of one class's F1 (multi-class) that promotes."
    )
    require_significant: bool | None = Field(
        default=None,
        description="Promote only when the paired bootstrap shows the challenger better "
        "beyond noise.",
    )


TRAINED = dg.AssetKey("trained_model")


def trained_on(
    trained_model: dict[str, Any], validated: StoredFrame, columns: list[str] | None = None
) -> pd.DataFrame:
    """The rows trained_model learned from: its files' stored partitions, its columns and
    each row's file and line, which fix its holdout (or only `columns`)."""
    files = trained_model.get("files")
    handle = validated.only(files) if files else validated
    return handle.load(
        columns or [*trained_model["features"], trained_model["target"], *LINEAGE_COLUMNS]
    )


def _requirements() -> list[str]:
    return [f"{name}=={package_version(name)}" for name in MODEL_REQUIREMENTS]


@dg.asset(
    group_name="model",
    kinds={"scikit-learn", "mlflow"},
    retry_policy=TRANSIENT_RETRY,
    # Not an input: drift changing is a reason to retrain on the validated data.
    deps=["drift_report"],
    description="The best of a random-forest sweep, logged to MLflow (skops, signature, input "
    "example) with its holdout metrics and the prior baseline.",
)
def trained_model(
    context: dg.AssetExecutionContext,
    config: TrainingConfig,
    dataset: DatasetSource,
    registry: ModelRegistry,
    mlflow_tracking: dg.ResourceParam[Any],
    validated_dataset: StoredFrame,
) -> dg.Output[dict[str, Any]]:
    import mlflow
    from mlflow.models import infer_signature

    from mlops_assets.training.evaluate import frame_fingerprint
    from mlops_assets.training.pipeline import SKOPS_TRUSTED_TYPES, threads_for
    from mlops_assets.training.sweep import races, run_sweep, split_holdout

    schema = dataset.dataset_schema()
    if not validated_dataset.partitions:
        raise dg.Failure(
            "no landed file has passed validation yet: see validated_dataset's partitions for "
            "each file's reasons",
            allow_retries=False,
        )
    stored = validated_dataset.columns
    features = [c for c in schema.features if c in stored]
    files: dict[str, str] = validated_dataset.attrs().get("source_sha256", {})
    context.log.info(f"training on {len(files)} landed file(s) that passed validation")
    # Only the columns the model uses; the frame itself is let go of once split, so the refit
    # never holds it beside its own copy of the rows.
    frame = validated_dataset.load([*features, schema.target, *LINEAGE_COLUMNS])
    _check_training_set(frame, schema, config.training_set)
    # Each row's file and line fix its side of the holdout; the split keeps only positions.
    split = split_holdout(frame, features, schema.target, config.test_size, config.seed)
    for column in LINEAGE_COLUMNS:
        del frame[column]
    rows = len(frame)
    if rows >= 1_000_000:
        context.log.info(f"fingerprinting {rows:,} rows")
    data_fingerprint = frame_fingerprint(frame)
    sample = _training_sample(frame, config.seed)
    del frame
    candidates = config.candidates()
    # What the steps after the sweep import is imported beside the refit of a race's winner
    # when it fits on one core (see mlops_assets.preload for why not beside the race, two
    # cores or small data).
    racing = races(len(split.train_positions), len(candidates), config.full_cv_rows)
    result = run_sweep(
        split,
        features,
        schema.target,
        candidates,
        metric=config.metric,
        test_size=config.test_size,
        seed=config.seed,
        cv_folds=config.cv_folds,
        full_cv_rows=config.full_cv_rows,
        max_search_rows=config.max_search_rows,
        progress=context.log.info,
        keep_training_rows=False,
        beside_refit=lambda alone: preloading(enabled=racing and alone),
    )
    with dagster_mlflow_run(mlflow_tracking) as run:
        for candidate in result.candidates:
            with mlflow.start_run(run_name=candidate.label, nested=True):
                mlflow.log_params({"family": candidate.family, **candidate.params})
                mlflow.log_metrics(
                    {
                        f"cv_{config.metric}": candidate.cv_score,
                        "cv_rows": candidate.rows,
                        "rung": candidate.rung,
                        "fit_seconds": candidate.fit_seconds,
                    }
                )
        mlflow.log_params(
            {
                "family": result.best.family,
                **result.best.params,
                "search": result.search,
                "metric": config.metric,
                "test_size": config.test_size,
                "seed": config.seed,
                "cv_folds": config.cv_folds,
                "rows": rows,
                "features": len(features),
            }
        )
        mlflow.log_metrics(
            {
                **{f"holdout_{k}": v for k, v in result.holdout_metrics.items()},
                **{f"baseline_{k}": v for k, v in result.baseline_metrics.items()},
                f"cv_{config.metric}": result.best.cv_score,
            }
        )
        mlflow.set_tags(
            {
                "dagster.run_id": context.run.run_id,
                "dagster.asset": "trained_model",
                "dataset.fingerprint": data_fingerprint,
                "dataset.schema": schema.name,
                "holdout.fingerprint": result.split.holdout_fingerprint,
                "dataset.files": str(len(files)),
                "python": platform.python_version(),
            }
        )
        # Which files (partitions) and which bytes of each the model learned from.
        mlflow.log_dict(files, FILES_ARTIFACT)
        _log_training_sample(Path(registry.reports_dir), sample)
        example = result.split.example
        # Integer features are declared as doubles: the pipeline imputes missing values, and an
        # int column in the signature would reject the NaN that pandas uses for them.
        example = example.astype(
            {c: "float64" for c in example.columns if pd.api.types.is_integer_dtype(example[c])}
        )
        # MLflow predicts the example again to check it serves: five rows, boosting's OpenMP on
        # one thread (a forest refit on 1,000 rows or more keeps its joblib threads).
        with threads_for(len(example)):
            info = mlflow.sklearn.log_model(
                result.model,
                name="model",
                signature=infer_signature(example, result.model.predict(example)),
                input_example=example,
                pip_requirements=_requirements(),
                serialization_format="skops",
                skops_trusted_types=SKOPS_TRUSTED_TYPES,
            )
        run_id, experiment_id = run.info.run_id, run.info.experiment_id
        artifact_bytes = registry.model_artifact_bytes(info.model_id)
        mlflow.log_metric("model_artifact_bytes", artifact_bytes)
        mlflow.log_metric("refit_seconds", result.refit_seconds)
    context.log.info(
        f"logged {result.best.label}: {artifact_bytes / 1e6:.1f} MB, holdout "
        f"{config.metric}={result.holdout_metrics[config.metric]:.4f}"
    )
    record = {
        "run_id": run_id,
        "experiment_id": experiment_id,
        "model_uri": info.model_uri,
        "model_id": info.model_id,
        "metric": config.metric,
        "holdout_metrics": result.holdout_metrics,
        "baseline_metrics": result.baseline_metrics,
        "family": result.best.family,
        "best_params": result.best.params,
        "candidates": [c.as_row(config.metric) for c in result.candidates],
        "search": result.search,
        "model_artifact_bytes": artifact_bytes,
        "target": schema.target,
        "features": features,
        "classes": result.classes,
        "test_size": config.test_size,
        "seed": config.seed,
        "holdout_fingerprint": result.split.holdout_fingerprint,
        "holdout_rows": len(result.split.test_y),
        "dataset_fingerprint": data_fingerprint,
        "files": files,
    }
    return dg.Output(
        record,
        metadata={
            **scores(result.holdout_metrics),
            f"baseline_{config.metric}": score(result.baseline_metrics[config.metric]),
            "family": result.best.family,
            "params": dg.MetadataValue.json(result.best.params),
            "search": result.search,
            "candidates": markdown_table(pd.DataFrame(record["candidates"])),
            "model_artifact_mb": round(artifact_bytes / 1e6, 3),
            "rows": rows,
            "holdout_rows": record["holdout_rows"],
            "mlflow_run_id": run_id,
            "mlflow_run": dg.MetadataValue.url(registry.run_url(experiment_id, run_id)),
            "model_uri": info.model_uri,
            "dataset_fingerprint": data_fingerprint,
            "files": len(files),
            "file_versions": markdown_table(
                pd.DataFrame({"file": list(files), "sha256": [v[:16] for v in files.values()]}),
                max_rows=100,
            ),
        },
    )


def _check_training_set(frame: pd.DataFrame, schema: Any, rules: TrainingSetRules) -> None:
    from mlops_assets.quality.validate import QualityThresholds, training_set_failures

    failures = training_set_failures(
        frame,
        schema,
        QualityThresholds(
            min_rows=rules.min_rows,
            min_class_share=rules.min_class_share,
            max_duplicate_share=rules.max_duplicate_share,
            max_conflict_share=rules.max_conflict_share,
        ),
    )
    if failures:
        lines = [f"{len(failures)} training-set failure(s) across the landed files:"]
        lines += [f"  - {f}" for f in failures]
        raise dg.Failure(description="\n".join(lines), allow_retries=False)


def _training_sample(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """What drift is measured against."""
    return frame.sample(n=min(len(frame), DRIFT_SAMPLE_ROWS), random_state=seed)


def _log_training_sample(folder: Path, sample: pd.DataFrame) -> None:
    """Logged with the run, where drift reads it from; the file written for that, in a
    temporary folder under `folder`, is removed once logged (a copy used to stay behind per
    run: 15 MB at 100,000 rows and more)."""
    import mlflow

    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as staging:
        path = Path(staging) / TRAINING_SAMPLE
        sample.to_parquet(path, index=False)
        mlflow.log_artifact(str(path), "data")


@dg.asset(
    group_name="model",
    kinds={"mlflow"},
    retry_policy=TRANSIENT_RETRY,
    # Registry writes are serialised across runs (dagster.yaml sets the pool's limit to 1).
    pool="mlflow_registry",
    description="The trained model as a version in the MLflow registry, with its gate "
    "decision and reproducibility manifest as tags. The alias `champion` moves to it only when "
    "it passes the gate against the current champion on the same holdout; otherwise it gets "
    "the alias `challenger`.",
    check_specs=[
        dg.AssetCheckSpec(
            "promotion_gate",
            asset="registered_model",
            blocking=True,
            description="Floors, prior baseline, no regression (per class too) and a paired "
            "test against the champion. Below a floor or the baseline is an error; not "
            "better than the champion is a warning (the champion stays).",
        )
    ],
)
def registered_model(
    context: dg.AssetExecutionContext,
    config: GateConfig,
    registry: ModelRegistry,
    gate_policy: GatePolicy,
    dataset: DatasetSource,
    mlflow_tracking: dg.ResourceParam[Any],
    trained_model: dict[str, Any],
    validated_dataset: StoredFrame,
) -> Iterator[Any]:
    import mlflow

    from mlops_assets.automation import code_versions
    from mlops_assets.manifest import reproducibility_manifest
    from mlops_assets.promotion import gate_and_register
    from mlops_assets.sources import fingerprint
    from mlops_assets.training.evaluate import HOLDOUT_PREDICTIONS, holdout_table
    from mlops_assets.training.sweep import holdout_for

    metric = trained_model["metric"]
    frame = trained_on(trained_model, validated_dataset)
    split = holdout_for(trained_model, frame)
    if split.holdout_fingerprint != trained_model["holdout_fingerprint"]:
        raise dg.Failure(
            "the holdout rebuilt from validated_dataset differs from the one trained_model "
            "scored: re-materialize trained_model",
            allow_retries=False,
        )
    rules = gate_policy.rules(metric, config)
    run_id = context.run.run_id
    tags = {
        **reproducibility_manifest(
            Path(dataset.project_dir),
            dataset_fingerprint=trained_model["dataset_fingerprint"],
            rows=len(frame),
            schema_hash=dataset.dataset_schema().fingerprint,
            seed=trained_model["seed"],
            dagster_run_id=run_id,
            data_versions={
                "trained_model": latest_data_version(context.instance, TRAINED),
                "landed_files": fingerprint(list(trained_model.get("files", {}).items())),
            },
            files=trained_model.get("files", {}),
            code_versions=code_versions(),
        ),
        "dagster.run_id": run_id,
        "dagster.run_url": f"{gate_policy.dagster_ui_url}/runs/{run_id}",
        "dagster.asset_url": f"{gate_policy.dagster_ui_url}/assets/registered_model",
        "dataset.fingerprint": trained_model["dataset_fingerprint"],
        "holdout.fingerprint": trained_model["holdout_fingerprint"],
        "model.family": str(trained_model.get("family", "random_forest")),
        "model.artifact_bytes": str(trained_model.get("model_artifact_bytes", "")),
    }
    promotion = gate_and_register(
        registry,
        rules,
        split,
        trained_model["model_uri"],
        trained_model["run_id"],
        trained_model["model_id"],
        trained_model["baseline_metrics"],
        tags,
    )
    decision, number = promotion.decision, promotion.version
    # What the registered artifact predicted on the holdout, for model_report: at a million
    # rows, running the model over the holdout again there cost more than a second.
    predictions = registry.version_dir(number) / HOLDOUT_PREDICTIONS
    write_frame(
        predictions,
        holdout_table(split.test_y, promotion.predictions, promotion.probabilities),
    )
    with dagster_mlflow_run(mlflow_tracking):
        mlflow.log_metrics({f"gate_{k}": v for k, v in decision.numbers().items()})
        mlflow.set_tags(
            {
                "registered.version": str(number),
                "gate.decision": "promoted" if decision.promote else "rejected",
                "dagster.run_url": tags["dagster.run_url"],
            }
        )
    context.log.info(f"{registry.model_name} v{number}: {decision.reason}")
    record = {
        "name": registry.model_name,
        "version": number,
        "champion": decision.promote,
        "champion_version": number if decision.promote else decision.champion_version,
        "previous_champion": promotion.previous_champion,
        "metric": metric,
        "reason": decision.reason,
        "challenger_score": decision.challenger,
        "champion_score": decision.champion,
        "baseline_score": decision.baseline,
        "run_id": trained_model["run_id"],
        "holdout_predictions": str(predictions),
        "classes": promotion.classes,
        "challenger_metrics": promotion.challenger_metrics,
        "champion_metrics": promotion.champion_metrics,
        "gate_details": {**decision.checks, **decision.numbers()},
        "dagster_run_url": tags["dagster.run_url"],
    }
    champion_now = number if decision.promote else decision.champion_version
    yield dg.Output(
        record,
        # Keyed on the champion, so what depends on the champion (batch predictions) re-runs
        # when it changes, not each time a rejected challenger is registered.
        data_version=dg.DataVersion(f"{registry.model_name}@{champion_now}"),
        metadata={
            "version": number,
            "champion": decision.promote,
            "decision": decision.reason,
            "model_artifact_mb": round(trained_model.get("model_artifact_bytes", 0) / 1e6, 3),
            **scores(promotion.challenger_metrics),
            **scores(decision.numbers()),
            "model_version": dg.MetadataValue.url(registry.version_url(number)),
            "mlflow_run": dg.MetadataValue.url(
                registry.run_url(trained_model["experiment_id"], trained_model["run_id"])
            ),
        },
    )
    comparison = pd.DataFrame(
        [
            {"model": f"challenger v{number}", **promotion.challenger_metrics},
            {"model": "prior baseline", **trained_model["baseline_metrics"]},
            *(
                [{"model": f"champion v{decision.champion_version}", **promotion.champion_metrics}]
                if promotion.champion_metrics
                else []
            ),
        ]
    )
    bad_model = decision.checks.get("floors") == "failed" or decision.checks.get("baseline") == (
        "failed"
    )
    yield dg.AssetCheckResult(
        check_name="promotion_gate",
        passed=decision.promote,
        severity=dg.AssetCheckSeverity.ERROR if bad_model else dg.AssetCheckSeverity.WARN,
        metadata={
            "reason": decision.reason,
            "scores": markdown_table(comparison),
            "checks": dg.MetadataValue.json(decision.checks),
            **scores(decision.numbers()),
        },
    )
