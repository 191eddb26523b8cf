"""Gate decisions on constructed cases, without Dagster or MLflow."""

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from mlops_assets.gate import GateRules, Scored, decide, mcnemar_p, paired_test, per_class_f1

RULES = GateRules(metric="f1_macro", floors={"f1_macro": 0.7, "accuracy": 0.7})


def _with_errors(truth: np.ndarray, rate: float, seed: int, classes: int = 2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    wrong = rng.random(len(truth)) < rate
    return np.where(wrong, (truth + rng.integers(1, classes, len(truth))) % classes, truth)


def _scored(truth: np.ndarray, predicted: np.ndarray, version: int | None = None) -> Scored:
    metrics = {
        "accuracy": accuracy_score(truth, predicted),
        "balanced_accuracy": balanced_accuracy_score(truth, predicted),
        "f1_macro": f1_score(truth, predicted, average="macro"),
    }
    return Scored(predicted, metrics, version)


TRUTH = np.random.default_rng(0).integers(0, 2, 400)
BASELINE = {"f1_macro": 0.35, "accuracy": 0.5}


def test_first_model_needs_only_floors_and_baseline() -> None:
    decision = decide(RULES, TRUTH, _scored(TRUTH, _with_errors(TRUTH, 0.2, 1)), BASELINE)
    assert decision.promote and decision.reason.startswith("first model")
    assert decision.checks == {"floors": "passed", "baseline": "passed"}


def test_clearly_better_challenger_passes() -> None:
    champion = _scored(TRUTH, _with_errors(TRUTH, 0.25, 1), version=3)
    challenger = _scored(TRUTH, _with_errors(TRUTH, 0.05, 2))
    decision = decide(RULES, TRUTH, challenger, BASELINE, champion)
    assert decision.promote, decision.reason
    assert decision.paired is not None and decision.paired.low > 0
    assert decision.paired.mcnemar_p < 0.001
    assert "beats champion v3" in decision.reason
    assert decision.as_tags()["gate.check.paired_test"] == "passed"


def test_better_only_by_noise_fails_the_paired_test() -> None:
    champion_predictions = _with_errors(TRUTH, 0.10, 1)
    challenger_predictions = champion_predictions.copy()
    wrong = np.flatnonzero(challenger_predictions != TRUTH)[:2]
    challenger_predictions[wrong] = TRUTH[wrong]  # two fewer mistakes out of 400
    champion = _scored(TRUTH, champion_predictions, version=1)
    challenger = _scored(TRUTH, challenger_predictions)
    assert challenger.metrics["f1_macro"] > champion.metrics["f1_macro"]
    decision = decide(RULES, TRUTH, challenger, BASELINE, champion)
    assert not decision.promote
    assert decision.checks["paired_test"] == "failed"
    assert "within noise" in decision.reason
    # Without the noise rule the same challenger would have been promoted.
    relaxed = GateRules(metric="f1_macro", floors=RULES.floors, require_significant=False)
    assert decide(relaxed, TRUTH, challenger, BASELINE, champion).promote


def test_shuffled_labels_fail_the_floors() -> None:
    shuffled = np.random.default_rng(5).permutation(TRUTH)
    decision = decide(RULES, TRUTH, _scored(TRUTH, shuffled), BASELINE)
    assert not decision.promote
    assert "below the floor" in decision.reason
    assert decision.checks == {"floors": "failed"}


def test_not_beating_the_prior_baseline_fails() -> None:
    decision = decide(
        GateRules(floors={}),
        TRUTH,
        _scored(TRUTH, _with_errors(TRUTH, 0.3, 1)),
        {"f1_macro": 0.9},
    )
    assert not decision.promote and "does not beat the prior baseline" in decision.reason


def test_per_class_regression_fails() -> None:
    truth = np.random.default_rng(1).integers(0, 3, 600)
    champion_predictions = _with_errors(truth, 0.15, 1, classes=3)
    # Better on classes 0 and 1, but class 2 collapses.
    challenger_predictions = truth.copy()
    class_two = np.flatnonzero(truth == 2)
    challenger_predictions[class_two[: len(class_two) // 3]] = 0
    champion = _scored(truth, champion_predictions, version=4)
    challenger = _scored(truth, challenger_predictions)
    rules = GateRules(metric="accuracy", floors={}, tolerance=0.05, class_tolerance=0.05)
    assert challenger.metrics["accuracy"] > champion.metrics["accuracy"]
    decision = decide(rules, truth, challenger, {"accuracy": 0.33}, champion)
    assert not decision.promote
    assert "class 2 F1" in decision.reason
    assert decision.class_deltas["2"] < -0.05


def test_a_metric_regression_beyond_tolerance_fails() -> None:
    champion = _scored(TRUTH, _with_errors(TRUTH, 0.05, 1), version=2)
    challenger = _scored(TRUTH, _with_errors(TRUTH, 0.12, 2))
    decision = decide(RULES, TRUTH, challenger, BASELINE, champion)
    assert not decision.promote and "regresses against champion v2" in decision.reason


def test_a_champion_that_cannot_be_scored_stays() -> None:
    decision = decide(
        RULES,
        TRUTH,
        _scored(TRUTH, TRUTH),
        BASELINE,
        champion_problem="KeyError: 'x'",
        champion_version=2,
    )
    assert not decision.promote
    assert "champion v2 could not be scored" in decision.reason


@pytest.mark.parametrize("metric", ["accuracy", "balanced_accuracy", "f1_macro"])
def test_paired_bootstrap_is_centred_on_the_observed_difference(metric: str) -> None:
    truth = np.random.default_rng(3).integers(0, 3, 300)
    a, b = _with_errors(truth, 0.1, 1, 3), _with_errors(truth, 0.2, 2, 3)
    scorer = {
        "accuracy": accuracy_score,
        "balanced_accuracy": balanced_accuracy_score,
        "f1_macro": lambda t, p: f1_score(t, p, average="macro"),
    }[metric]
    test = paired_test(metric, truth, a, b, rounds=500)
    assert test.difference == pytest.approx(scorer(truth, a) - scorer(truth, b))
    assert test.low < test.difference < test.high


def test_mcnemar_and_per_class_f1() -> None:
    assert mcnemar_p(0, 0) == 1.0
    assert mcnemar_p(10, 10) == 1.0
    assert mcnemar_p(20, 2) < 0.001
    truth = np.array([0, 0, 1, 1, 2, 2])
    predicted = np.array([0, 1, 1, 1, 2, 0])
    expected = f1_score(truth, predicted, average=None)
    assert list(per_class_f1(truth, predicted).values()) == pytest.approx(list(expected))
