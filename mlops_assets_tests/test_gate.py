"""The promotion decision on constructed cases."""

import pytest

from mlops_assets.gate import GateRules, decide

RULES = GateRules(metric="f1_macro", floor=0.7, tolerance=0.01)


def test_first_model_needs_only_floor_and_baseline() -> None:
    decision = decide(RULES, challenger=0.9, baseline=0.4)
    assert decision.promote and decision.reason.startswith("first model")


@pytest.mark.parametrize(
    ("challenger", "baseline", "champion", "promote", "words"),
    [
        (0.65, 0.4, None, False, "below the floor"),
        (0.75, 0.80, None, False, "does not beat the prior baseline"),
        (0.90, 0.4, 0.95, False, "worse than champion v3"),
        (0.945, 0.4, 0.95, True, "at least as good as champion v3"),
        (0.96, 0.4, 0.95, True, "at least as good"),
        (float("nan"), 0.4, None, False, "could not be computed"),
    ],
)
def test_decisions(
    challenger: float, baseline: float, champion: float | None, promote: bool, words: str
) -> None:
    decision = decide(RULES, challenger, baseline, champion=champion, champion_version=3)
    assert decision.promote is promote
    assert words in decision.reason
    tags = decision.as_tags()
    assert tags["gate.decision"] == ("promoted" if promote else "rejected")


def test_a_champion_that_cannot_be_scored_stays() -> None:
    decision = decide(RULES, 0.99, 0.4, champion_version=2, champion_problem="KeyError: 'x'")
    assert not decision.promote
    assert "champion v2 could not be scored" in decision.reason
