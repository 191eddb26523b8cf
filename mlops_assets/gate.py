"""The promotion decision: does the challenger replace the champion?

Three rules, all on the same holdout: an absolute floor, better than a baseline that predicts
the class prior, and not worse than the current champion (within a tolerance).
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class GateRules:
    metric: str = "f1_macro"
    floor: float = 0.7
    tolerance: float = 0.0


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str
    metric: str
    challenger: float
    baseline: float
    champion: float | None
    champion_version: int | None

    def as_tags(self) -> dict[str, str]:
        return {
            "gate.decision": "promoted" if self.promote else "rejected",
            "gate.reason": self.reason,
            "gate.metric": self.metric,
            "gate.challenger": f"{self.challenger:.6f}",
            "gate.baseline": f"{self.baseline:.6f}",
            "gate.champion": "" if self.champion is None else f"{self.champion:.6f}",
        }


def decide(
    rules: GateRules,
    challenger: float,
    baseline: float,
    champion: float | None = None,
    champion_version: int | None = None,
    champion_problem: str | None = None,
) -> GateDecision:
    """`champion_problem` says why an existing champion could not be scored on this holdout;
    such a champion is kept, since nothing shows the challenger is as good."""

    def decision(promote: bool, reason: str) -> GateDecision:
        return GateDecision(
            promote, reason, rules.metric, challenger, baseline, champion, champion_version
        )

    m = rules.metric
    if challenger != challenger:  # NaN
        return decision(False, f"the challenger's {m} could not be computed")
    if challenger < rules.floor:
        return decision(False, f"{m} {challenger:.4f} is below the floor {rules.floor:.4f}")
    if challenger <= baseline:
        return decision(
            False, f"{m} {challenger:.4f} does not beat the prior baseline {baseline:.4f}"
        )
    if champion_problem:
        return decision(
            False,
            f"champion v{champion_version} could not be scored on this holdout "
            f"({champion_problem}); it stays champion",
        )
    if champion is None:
        return decision(
            True, f"first model: {m} {challenger:.4f} clears the floor and beats the baseline"
        )
    if challenger < champion - rules.tolerance:
        return decision(
            False,
            f"{m} {challenger:.4f} is worse than champion v{champion_version} ({champion:.4f}) "
            f"beyond the tolerance {rules.tolerance:.4f}",
        )
    return decision(
        True,
        f"{m} {challenger:.4f} is at least as good as champion v{champion_version} "
        f"({champion:.4f}) on the same holdout",
    )
