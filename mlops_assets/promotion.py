"""Score, gate, register, move the alias: the registry side of a training run, without Dagster.

Everything between reading the current champion and moving the alias happens under the
registry lock, so concurrent registrations cannot both promote against the same old champion.
The version is registered with its gate decision and manifest as tags first; the alias moves
last, so a crash in between leaves `champion` on a version that passed."""

from dataclasses import dataclass
from typing import Any

import numpy as np

from mlops_assets.gate import GateDecision, GateRules, Scored, decide
from mlops_assets.resources.mlflow import CHALLENGER, CHAMPION, ModelRegistry
from mlops_assets.training.evaluate import predict_and_score, predict_proba_and_score
from mlops_assets.training.sweep import Split


@dataclass
class Promotion:
    version: int
    decision: GateDecision
    challenger_metrics: dict[str, float]
    champion_metrics: dict[str, float] | None
    previous_champion: int | None
    predictions: np.ndarray
    # The registered artifact's class probabilities on the holdout (None without
    # predict_proba), columns in `classes` order: the report draws from them.
    probabilities: np.ndarray | None
    classes: list[Any]


def gate_and_register(
    registry: ModelRegistry,
    rules: GateRules,
    split: Split,
    model_uri: str,
    run_id: str,
    model_id: str | None,
    baseline: dict[str, float],
    tags: dict[str, str],
) -> Promotion:
    # The artifact that gets registered is the one scored: load it back, don't trust memory.
    model = registry.load_model_uri(model_uri)
    predicted, metrics, probabilities = predict_proba_and_score(model, split.test_x, split.test_y)
    challenger = Scored(predicted, metrics)
    with registry.lock():
        current = registry.version_for_alias(CHAMPION)
        champion: Scored | None = None
        problem = None
        if current is not None:
            try:
                old = registry.load_model(int(current.version))
                champion = Scored(
                    *predict_and_score(old, split.test_x, split.test_y), int(current.version)
                )
            except Exception as exc:  # any way the old model fails on this data keeps it
                problem = f"{type(exc).__name__}: {exc}"
        decision = decide(
            rules,
            np.asarray(split.test_y),
            challenger,
            baseline,
            champion,
            champion_problem=problem,
            champion_version=None if current is None else int(current.version),
        )
        version = int(
            registry.register(model_uri, run_id, model_id, {**tags, **decision.as_tags()}).version
        )
        previous = None
        if decision.promote:
            previous = registry.move_champion(version, {"champion.reason": decision.reason})
        else:
            registry.set_alias(CHALLENGER, version)
    return Promotion(
        version,
        decision,
        challenger.metrics,
        None if champion is None else champion.metrics,
        previous,
        challenger.predictions,
        probabilities,
        np.asarray(getattr(model, "classes_", [])).tolist(),
    )


def gate_rules(metric: str, **overrides: Any) -> GateRules:
    return GateRules(metric=metric, **{k: v for k, v in overrides.items() if v is not None})
