"""Split, sweep and pick: a stratified holdout is put aside first; candidates are compared by
cross-validation on the rest, so the holdout stays unseen until the gate scores it."""

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.metrics import get_scorer
from sklearn.model_selection import StratifiedKFold, train_test_split

from mlops_assets.training.evaluate import METRICS, baseline_score, frame_fingerprint, score
from mlops_assets.training.pipeline import build_pipeline

_SKLEARN_SCORING = {
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced_accuracy",
    "f1_macro": "f1_macro",
    "roc_auc": "roc_auc_ovr",
}


@dataclass(frozen=True)
class Split:
    train_x: pd.DataFrame
    train_y: pd.Series
    test_x: pd.DataFrame
    test_y: pd.Series

    @property
    def holdout_fingerprint(self) -> str:
        return frame_fingerprint(self.test_x.assign(__label=self.test_y))


@dataclass
class Candidate:
    params: dict[str, Any]
    cv_score: float
    cv_std: float


@dataclass
class SweepResult:
    model: Any
    best: Candidate
    candidates: list[Candidate]
    holdout_metrics: dict[str, float]
    baseline_metrics: dict[str, float]
    split: Split
    metric: str
    classes: list[str] = field(default_factory=list)


def split_holdout(
    frame: pd.DataFrame, features: list[str], target: str, test_size: float, seed: int
) -> Split:
    """Deterministic for a given frame and seed: the gate recomputes the same holdout."""
    labels = frame[target]
    train_x, test_x, train_y, test_y = train_test_split(
        frame[features], labels, test_size=test_size, random_state=seed, stratify=labels
    )
    return Split(train_x, train_y, test_x, test_y)


def holdout_for(record: dict[str, Any], frame: pd.DataFrame) -> Split:
    """The split a trained_model record was scored on, rebuilt from the same frame."""
    return split_holdout(
        frame, record["features"], record["target"], record["test_size"], record["seed"]
    )


def forest_cv_scores(
    split: Split, sizes: list[int], folds: int, scoring: str, seed: int
) -> dict[int, list[float]]:
    """Cross-validated scores of forests of each size, growing one forest per fold.

    A seeded forest draws its trees' seeds in order, so its first n trees are the forest of n
    trees: with warm_start each fold fits max(sizes) trees once instead of sum(sizes), and the
    scores are those cross_val_score gives for each size on its own."""
    scorer = get_scorer(scoring)
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    ordered = sorted(set(sizes))
    scores: dict[int, list[float]] = {n: [] for n in ordered}
    template = build_pipeline(split.train_x, ordered[0], seed)
    for train, test in cv.split(split.train_x, split.train_y):
        pipeline = clone(template).set_params(model__warm_start=True)
        train_x, train_y = split.train_x.iloc[train], split.train_y.iloc[train]
        for n in ordered:
            pipeline.set_params(model__n_estimators=n).fit(train_x, train_y)
            scores[n].append(
                float(scorer(pipeline, split.train_x.iloc[test], split.train_y.iloc[test]))
            )
    return scores


def run_sweep(
    frame: pd.DataFrame,
    features: list[str],
    target: str,
    n_estimators: list[int],
    metric: str = "f1_macro",
    test_size: float = 0.2,
    seed: int = 42,
    cv_folds: int = 3,
) -> SweepResult:
    if metric not in METRICS:
        raise ValueError(f"unknown metric '{metric}': choose one of {', '.join(METRICS)}")
    if not n_estimators:
        raise ValueError("the sweep needs at least one n_estimators value")
    split = split_holdout(frame, features, target, test_size, seed)
    folds = min(cv_folds, int(split.train_y.value_counts().min()))
    scoring = _SKLEARN_SCORING[metric]
    if metric == "roc_auc" and split.train_y.nunique() == 2:
        scoring = "roc_auc"
    if folds >= 2:
        by_size = forest_cv_scores(split, n_estimators, folds, scoring, seed)
        candidates = [
            Candidate({"n_estimators": n}, float(np.mean(by_size[n])), float(np.std(by_size[n])))
            for n in n_estimators
        ]
    else:
        candidates = [
            Candidate({"n_estimators": n}, float("nan"), float("nan")) for n in n_estimators
        ]
    # Ties go to the smaller forest: as good and cheaper to serve.
    best = max(candidates, key=lambda c: (c.cv_score, -c.params["n_estimators"]))
    model = build_pipeline(split.train_x, best.params["n_estimators"], seed)
    model.fit(split.train_x, split.train_y)
    return SweepResult(
        model=model,
        best=best,
        candidates=candidates,
        holdout_metrics=score(model, split.test_x, split.test_y),
        baseline_metrics=baseline_score(split.train_x, split.train_y, split.test_x, split.test_y),
        split=split,
        metric=metric,
        classes=[str(c) for c in model.classes_],
    )
