"""trained_model -> registered_model, tracked in MLflow."""

import platform
from collections.abc import Iterator
from importlib.metadata import version as package_version
from typing import Any

import dagster as dg
import pandas as pd
from pydantic import Field

from mlops_assets.assets.metadata import markdown_table
from mlops_assets.automation import TRANSIENT_RETRY
from mlops_assets.resources.dataset import DatasetSource
from mlops_assets.resources.mlflow import CHALLENGER, CHAMPION, ModelRegistry, dagster_mlflow_run

# Exact versions of what the model needs at inference; inferring them costs ~9 s per log.
MODEL_REQUIREMENTS = ("scikit-learn", "skops", "pandas", "numpy", "scipy")


class TrainingConfig(dg.Config):
    n_estimators: list[int] = Field(
        default=[50, 100, 200], description="Forest sizes to sweep; the best by `metric` wins."
    )
    metric: str = Field(
        default="f1_macro",
        description="accuracy, balanced_accuracy, f1_macro or roc_auc: picks the best candidate "
        "and decides promotion.",
    )
    test_size: float = Field(default=0.2, description="Share of rows held out for the gate.")
    seed: int = 42
    cv_folds: int = 3


class GateConfig(dg.Config):
    floor: float = Field(default=0.7, description="The challenger's metric must reach this.")
    tolerance: float = Field(
        default=0.0, description="How much worse than the champion still promotes."
    )


def _requirements() -> list[str]:
    return [f"{name}=={package_version(name)}" for name in MODEL_REQUIREMENTS]


@dg.asset(
    group_name="model",
    kinds={"scikit-learn", "mlflow"},
    retry_policy=TRANSIENT_RETRY,
    description="The best of a random-forest sweep, logged to MLflow (skops, signature, input "
    "example) with its holdout metrics and the prior baseline.",
)
def trained_model(
    context: dg.AssetExecutionContext,
    config: TrainingConfig,
    dataset: DatasetSource,
    registry: ModelRegistry,
    mlflow_tracking: dg.ResourceParam[Any],
    validated_dataset: pd.DataFrame,
) -> dg.Output[dict[str, Any]]:
    import mlflow
    from mlflow.models import infer_signature

    from mlops_assets.training.evaluate import frame_fingerprint
    from mlops_assets.training.pipeline import SKOPS_TRUSTED_TYPES
    from mlops_assets.training.sweep import run_sweep

    schema = dataset.dataset_schema()
    features = [c for c in schema.features if c in validated_dataset.columns]
    data_fingerprint = frame_fingerprint(validated_dataset[[*features, schema.target]])
    result = run_sweep(
        validated_dataset,
        features,
        schema.target,
        n_estimators=config.n_estimators,
        metric=config.metric,
        test_size=config.test_size,
        seed=config.seed,
        cv_folds=config.cv_folds,
    )
    with dagster_mlflow_run(mlflow_tracking) as run:
        for candidate in result.candidates:
            with mlflow.start_run(
                run_name=f"n_estimators={candidate.params['n_estimators']}", nested=True
            ):
                mlflow.log_params(candidate.params)
                mlflow.log_metrics({f"cv_{config.metric}": candidate.cv_score})
        mlflow.log_params(
            {
                **result.best.params,
                "metric": config.metric,
                "test_size": config.test_size,
                "seed": config.seed,
                "cv_folds": config.cv_folds,
                "rows": len(validated_dataset),
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
                "python": platform.python_version(),
            }
        )
        example = result.split.train_x.head(5)
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
    record = {
        "run_id": run_id,
        "experiment_id": experiment_id,
        "model_uri": info.model_uri,
        "model_id": info.model_id,
        "metric": config.metric,
        "holdout_metrics": result.holdout_metrics,
        "baseline_metrics": result.baseline_metrics,
        "best_params": result.best.params,
        "candidates": [
            {**c.params, f"cv_{config.metric}": c.cv_score, "cv_std": c.cv_std}
            for c in result.candidates
        ],
        "target": schema.target,
        "features": features,
        "classes": result.classes,
        "test_size": config.test_size,
        "seed": config.seed,
        "holdout_fingerprint": result.split.holdout_fingerprint,
        "dataset_fingerprint": data_fingerprint,
    }
    return dg.Output(
        record,
        metadata={
            **{k: float(v) for k, v in result.holdout_metrics.items()},
            f"baseline_{config.metric}": result.baseline_metrics[config.metric],
            "n_estimators": result.best.params["n_estimators"],
            "candidates": markdown_table(pd.DataFrame(record["candidates"])),
            "mlflow_run_id": run_id,
            "mlflow_run": dg.MetadataValue.url(registry.run_url(experiment_id, run_id)),
            "model_uri": info.model_uri,
            "dataset_fingerprint": data_fingerprint,
        },
    )


@dg.asset(
    group_name="model",
    kinds={"mlflow"},
    retry_policy=TRANSIENT_RETRY,
    description="The trained model as a version in the MLflow registry; the alias `champion` "
    "moves to it only when it passes the gate on the same holdout as the current champion.",
    check_specs=[
        dg.AssetCheckSpec(
            "promotion_gate",
            asset="registered_model",
            description="The new version cleared the floor, beat the prior baseline and was not "
            "worse than the champion, so it became champion.",
        )
    ],
)
def registered_model(
    context: dg.AssetExecutionContext,
    config: GateConfig,
    registry: ModelRegistry,
    mlflow_tracking: dg.ResourceParam[Any],
    trained_model: dict[str, Any],
    validated_dataset: pd.DataFrame,
) -> Iterator[Any]:
    import mlflow

    from mlops_assets.gate import GateRules, decide
    from mlops_assets.training.evaluate import score
    from mlops_assets.training.sweep import split_holdout

    metric = trained_model["metric"]
    split = split_holdout(
        validated_dataset,
        trained_model["features"],
        trained_model["target"],
        trained_model["test_size"],
        trained_model["seed"],
    )
    if split.holdout_fingerprint != trained_model["holdout_fingerprint"]:
        raise dg.Failure(
            "the holdout rebuilt from validated_dataset differs from the one trained_model "
            "scored: re-materialize trained_model",
            allow_retries=False,
        )
    champion = registry.version_for_alias(CHAMPION)
    champion_score, champion_metrics, problem = None, None, None
    if champion is not None:
        try:
            champion_metrics = score(
                registry.load_model(champion.version), split.test_x, split.test_y
            )
            champion_score = champion_metrics.get(metric)
        except Exception as exc:  # any way the old model fails on this data keeps it champion
            problem = f"{type(exc).__name__}: {exc}"
    decision = decide(
        GateRules(metric=metric, floor=config.floor, tolerance=config.tolerance),
        challenger=trained_model["holdout_metrics"][metric],
        baseline=trained_model["baseline_metrics"][metric],
        champion=champion_score,
        champion_version=None if champion is None else int(champion.version),
        champion_problem=problem,
    )
    tags = {
        **decision.as_tags(),
        "dagster.run_id": context.run.run_id,
        "dataset.fingerprint": trained_model["dataset_fingerprint"],
        "holdout.fingerprint": trained_model["holdout_fingerprint"],
    }
    version = registry.register(
        trained_model["model_uri"], trained_model["run_id"], trained_model["model_id"], tags
    )
    number = int(version.version)
    # The alias moves last, after the version and its tags exist.
    registry.set_alias(CHAMPION if decision.promote else CHALLENGER, number)
    with dagster_mlflow_run(mlflow_tracking):
        mlflow.log_metrics(
            {
                f"gate_challenger_{metric}": decision.challenger,
                f"gate_baseline_{metric}": decision.baseline,
                **(
                    {f"gate_champion_{metric}": champion_score}
                    if champion_score is not None
                    else {}
                ),
            }
        )
        mlflow.set_tags({"registered.version": str(number), "gate.decision": tags["gate.decision"]})
    context.log.info(f"{registry.model_name} v{number}: {decision.reason}")
    record = {
        "name": registry.model_name,
        "version": number,
        "champion": decision.promote,
        "champion_version": number if decision.promote else decision.champion_version,
        "metric": metric,
        "reason": decision.reason,
        "challenger_score": decision.challenger,
        "champion_score": champion_score,
        "baseline_score": decision.baseline,
        "run_id": trained_model["run_id"],
    }
    yield dg.Output(
        record,
        metadata={
            "version": number,
            "champion": decision.promote,
            "decision": decision.reason,
            f"challenger_{metric}": decision.challenger,
            f"baseline_{metric}": decision.baseline,
            **({f"champion_{metric}": champion_score} if champion_score is not None else {}),
            "model_version": dg.MetadataValue.url(registry.version_url(number)),
            "mlflow_run": dg.MetadataValue.url(
                registry.run_url(trained_model["experiment_id"], trained_model["run_id"])
            ),
        },
    )
    comparison = pd.DataFrame(
        [
            {"model": f"challenger v{number}", **trained_model["holdout_metrics"]},
            {"model": "prior baseline", **trained_model["baseline_metrics"]},
            *(
                [{"model": f"champion v{champion.version}", **champion_metrics}]
                if champion is not None and champion_metrics
                else []
            ),
        ]
    )
    yield dg.AssetCheckResult(
        check_name="promotion_gate",
        passed=decision.promote,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"reason": decision.reason, "scores": markdown_table(comparison)},
    )
