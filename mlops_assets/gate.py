"""The promotion decision: does the challenger replace the champion?

All comparisons use predictions on the same holdout. In order:
1. floors: every configured metric reaches its absolute floor;
2. baseline: the primary metric beats a model that predicts the class prior;
3. (a first model stops here: it becomes champion)
4. no regression: no tracked metric drops by more than `tolerance` against the champion, and,
   for multi-class labels, no class's F1 drops by more than `class_tolerance`;
5. noise: a paired bootstrap of the primary metric's difference (challenger - champion) must
   have its lower confidence bound above zero, so a challenger better only by noise does not
   replace the champion. McNemar's exact test on the discordant predictions is recorded too.
"""

from dataclasses import dataclass, field
from math import comb
from typing import Any

import numpy as np

RESAMPLED_METRICS = ("accuracy", "balanced_accuracy", "f1_macro")


@dataclass(frozen=True)
class GateRules:
    metric: str = "f1_macro"
    floors: dict[str, float] = field(default_factory=lambda: {"f1_macro": 0.7})
    tolerance: float = 0.01
    class_tolerance: float = 0.05
    require_significant: bool = True
    confidence: float = 0.95
    bootstrap_rounds: int = 2000
    seed: int = 0


@dataclass(frozen=True)
class Scored:
    """One model on the holdout: its predictions and the metrics computed from them."""

    predictions: np.ndarray
    metrics: dict[str, float]
    version: int | None = None


@dataclass(frozen=True)
class PairedTest:
    difference: float
    low: float
    high: float
    mcnemar_p: float
    discordant: tuple[int, int]  # (challenger right & champion wrong, the reverse)

    @property
    def significant(self) -> bool:
        return self.low > 0


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str
    metric: str
    challenger: float
    baseline: float
    champion: float | None
    champion_version: int | None
    checks: dict[str, str] = field(default_factory=dict)
    paired: PairedTest | None = None
    class_deltas: dict[str, float] = field(default_factory=dict)

    def as_tags(self) -> dict[str, str]:
        tags = {
            "gate.decision": "promoted" if self.promote else "rejected",
            "gate.reason": self.reason,
            "gate.metric": self.metric,
            "gate.challenger": f"{self.challenger:.6f}",
            "gate.baseline": f"{self.baseline:.6f}",
            "gate.champion": "" if self.champion is None else f"{self.champion:.6f}",
            "gate.champion_version": ""
            if self.champion_version is None
            else str(self.champion_version),
        }
        tags.update({f"gate.check.{name}": outcome for name, outcome in self.checks.items()})
        if self.paired is not None:
            tags["gate.paired.difference"] = f"{self.paired.difference:.6f}"
            tags["gate.paired.interval"] = f"[{self.paired.low:.6f}, {self.paired.high:.6f}]"
            tags["gate.paired.mcnemar_p"] = f"{self.paired.mcnemar_p:.6g}"
        return tags

    def numbers(self) -> dict[str, float]:
        values = {
            f"challenger_{self.metric}": self.challenger,
            f"baseline_{self.metric}": self.baseline,
        }
        if self.champion is not None:
            values[f"champion_{self.metric}"] = self.champion
        if self.paired is not None:
            values.update(
                {
                    "paired_difference": self.paired.difference,
                    "paired_low": self.paired.low,
                    "paired_high": self.paired.high,
                    "mcnemar_p": self.paired.mcnemar_p,
                }
            )
        values.update({f"class_delta_{k}": v for k, v in self.class_deltas.items()})
        return values


def _codes(labels: np.ndarray, *others: np.ndarray) -> tuple[np.ndarray, ...]:
    classes = np.unique(np.concatenate([np.asarray(labels), *map(np.asarray, others)]))
    return tuple(np.searchsorted(classes, np.asarray(a)) for a in (labels, *others))


def _resampled(
    metric: str, truth: np.ndarray, predicted: np.ndarray, weights: np.ndarray
) -> np.ndarray:
    """`metric` on every bootstrap sample at once: weights[b, i] = times row i is drawn."""
    n_classes = int(max(truth.max(), predicted.max())) + 1
    if metric == "accuracy":
        return weights @ (truth == predicted) / weights.sum(axis=1)
    present = weights @ np.eye(n_classes)[truth]  # rows of each class per sample
    true_pos = np.stack(
        [weights @ ((truth == k) & (predicted == k)) for k in range(n_classes)], axis=1
    )
    if metric == "balanced_accuracy":
        with np.errstate(invalid="ignore", divide="ignore"):
            recall = np.where(present > 0, true_pos / present, np.nan)
        return np.nanmean(recall, axis=1)
    predicted_pos = np.stack([weights @ (predicted == k) for k in range(n_classes)], axis=1)
    denominator = present + predicted_pos
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(denominator > 0, 2 * true_pos / denominator, np.nan)
    # sklearn's macro F1 averages over the labels present in truth or predictions.
    return np.nanmean(np.where(denominator > 0, f1, np.nan), axis=1)


def mcnemar_p(challenger_right: int, champion_right: int) -> float:
    """Exact two-sided McNemar test on the discordant pairs."""
    n = challenger_right + champion_right
    if n == 0:
        return 1.0
    k = min(challenger_right, champion_right)
    tail = sum(comb(n, i) for i in range(k + 1)) / 2**n
    return float(min(1.0, 2 * tail))


def paired_test(
    metric: str,
    truth: Any,
    challenger: Any,
    champion: Any,
    confidence: float = 0.95,
    rounds: int = 2000,
    seed: int = 0,
) -> PairedTest:
    rows = _codes(np.asarray(truth), np.asarray(challenger), np.asarray(champion))
    name = metric if metric in RESAMPLED_METRICS else "accuracy"
    # The metrics depend only on how many rows fall in each (truth, challenger, champion)
    # cell, so resampling rows is resampling cell counts: rounds x cells (at most K^3) instead
    # of rounds x rows, whatever the holdout's size.
    cells, counts = np.unique(np.stack(rows), axis=1, return_counts=True)
    y, a, b = cells
    n = int(counts.sum())
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(n, counts / n, size=rounds).astype(float)
    deltas = _resampled(name, y, a, weights) - _resampled(name, y, b, weights)
    full = counts[np.newaxis, :].astype(float)
    observed = float((_resampled(name, y, a, full) - _resampled(name, y, b, full))[0])
    alpha = 1 - confidence
    low, high = np.nanquantile(deltas, [alpha / 2, 1 - alpha / 2])
    a_right, b_right = a == y, b == y
    discordant = (int(counts[a_right & ~b_right].sum()), int(counts[~a_right & b_right].sum()))
    return PairedTest(observed, float(low), float(high), mcnemar_p(*discordant), discordant)


def per_class_f1(truth: Any, predicted: Any) -> dict[str, float]:
    truth, predicted = np.asarray(truth), np.asarray(predicted)
    scores = {}
    for label in np.unique(truth):
        tp = int(((truth == label) & (predicted == label)).sum())
        denominator = int((truth == label).sum() + (predicted == label).sum())
        scores[str(label)] = 2 * tp / denominator if denominator else 0.0
    return scores


def decide(
    rules: GateRules,
    truth: Any,
    challenger: Scored,
    baseline: dict[str, float],
    champion: Scored | None = None,
    champion_problem: str | None = None,
    champion_version: int | None = None,
) -> GateDecision:
    """`champion_problem` says why an existing champion could not be scored on this holdout;
    such a champion is kept, since nothing shows the challenger is as good."""
    m = rules.metric
    value = challenger.metrics.get(m, float("nan"))
    checks: dict[str, str] = {}
    version = champion.version if champion is not None else champion_version
    champion_value = champion.metrics.get(m) if champion is not None else None

    def decision(
        promote: bool, reason: str, paired: PairedTest | None = None, deltas: Any = None
    ) -> GateDecision:
        return GateDecision(
            promote,
            reason,
            m,
            value,
            baseline.get(m, float("nan")),
            champion_value,
            version,
            dict(checks),
            paired,
            dict(deltas or {}),
        )

    if value != value:
        return decision(False, f"the challenger's {m} could not be computed")
    for name, floor in rules.floors.items():
        score = challenger.metrics.get(name, float("nan"))
        if not score >= floor:
            checks["floors"] = "failed"
            return decision(False, f"{name} {score:.4f} is below the floor {floor:.4f}")
    checks["floors"] = "passed"
    if not value > baseline.get(m, float("-inf")):
        checks["baseline"] = "failed"
        return decision(
            False, f"{m} {value:.4f} does not beat the prior baseline {baseline[m]:.4f}"
        )
    checks["baseline"] = "passed"
    if champion_problem:
        checks["champion"] = "not comparable"
        return decision(
            False,
            f"champion v{version} could not be scored on this holdout ({champion_problem}); "
            "it stays champion",
        )
    if champion is None:
        return decision(True, f"first model: {m} {value:.4f} clears the floors and the baseline")

    regressions = [
        f"{name} {challenger.metrics[name]:.4f} vs {old:.4f}"
        for name, old in champion.metrics.items()
        if name in challenger.metrics and challenger.metrics[name] < old - rules.tolerance
    ]
    deltas: dict[str, float] = {}
    truth_array = np.asarray(truth)
    if len(np.unique(truth_array)) > 2:
        new, old = (
            per_class_f1(truth_array, challenger.predictions),
            per_class_f1(truth_array, champion.predictions),
        )
        deltas = {label: new[label] - old[label] for label in new}
        regressions += [
            f"class {label} F1 {new[label]:.4f} vs {old[label]:.4f}"
            for label, delta in deltas.items()
            if delta < -rules.class_tolerance
        ]
    if regressions:
        checks["no_regression"] = "failed"
        return decision(
            False,
            f"regresses against champion v{version} beyond the tolerance: "
            + "; ".join(regressions),
            deltas=deltas,
        )
    checks["no_regression"] = "passed"
    paired = paired_test(
        m,
        truth_array,
        challenger.predictions,
        champion.predictions,
        rules.confidence,
        rules.bootstrap_rounds,
        rules.seed,
    )
    if rules.require_significant and not paired.significant:
        checks["paired_test"] = "failed"
        return decision(
            False,
            f"{m} {value:.4f} vs champion v{version} {champion_value:.4f}: the difference "
            f"{paired.difference:+.4f} is within noise ({rules.confidence:.0%} interval "
            f"[{paired.low:+.4f}, {paired.high:+.4f}]); the champion stays",
            paired,
            deltas,
        )
    checks["paired_test"] = "passed" if paired.significant else "skipped"
    return decision(
        True,
        f"{m} {value:.4f} beats champion v{version} ({champion_value:.4f}) by "
        f"{paired.difference:+.4f}, {rules.confidence:.0%} interval "
        f"[{paired.low:+.4f}, {paired.high:+.4f}]",
        paired,
        deltas,
    )
