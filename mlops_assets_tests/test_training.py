"""Training without Dagster: the split, the sweep, the metrics."""

import numpy as np
import pandas as pd
import pytest

from mlops_assets.training.evaluate import baseline_score, score
from mlops_assets.training.pipeline import SKOPS_TRUSTED_TYPES
from mlops_assets.training.sweep import run_sweep, split_holdout


@pytest.fixture(scope="module")
def demo() -> pd.DataFrame:
    from sklearn.datasets import load_breast_cancer

    return load_breast_cancer(as_frame=True).frame


def _features(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c != "target"]


def test_holdout_is_stratified_and_deterministic(demo: pd.DataFrame) -> None:
    first = split_holdout(demo, _features(demo), "target", 0.2, 42)
    second = split_holdout(demo, _features(demo), "target", 0.2, 42)
    other = split_holdout(demo, _features(demo), "target", 0.2, 7)
    assert first.holdout_fingerprint == second.holdout_fingerprint != other.holdout_fingerprint
    assert len(first.test_x) == 114
    share = first.test_y.mean()
    assert abs(share - demo["target"].mean()) < 0.01


def test_sweep_picks_by_cross_validation_and_beats_the_baseline(demo: pd.DataFrame) -> None:
    result = run_sweep(demo, _features(demo), "target", n_estimators=[5, 50], metric="roc_auc")
    assert [c.params["n_estimators"] for c in result.candidates] == [5, 50]
    assert result.best.cv_score == max(c.cv_score for c in result.candidates)
    assert result.holdout_metrics["roc_auc"] > 0.95
    assert result.baseline_metrics["roc_auc"] == pytest.approx(0.5)
    assert result.holdout_metrics["accuracy"] > result.baseline_metrics["accuracy"]


def test_multiclass_with_categorical_features_and_missing_values() -> None:
    rng = np.random.default_rng(1)
    n = 240
    shape = rng.choice(["round", "long", "flat"], size=n)
    weight = rng.normal(5, 1, size=n)
    weight[:10] = np.nan
    frame = pd.DataFrame({"shape": shape, "weight": weight, "label": shape + "-fruit"})
    frame.loc[[3, 4], "shape"] = None
    result = run_sweep(frame, ["shape", "weight"], "label", n_estimators=[10])
    assert result.classes == ["flat-fruit", "long-fruit", "round-fruit"]
    assert result.holdout_metrics["f1_macro"] > 0.9
    assert "roc_auc" in result.holdout_metrics


def test_unknown_metric_is_refused(demo: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="unknown metric 'auc'"):
        run_sweep(demo, _features(demo), "target", n_estimators=[5], metric="auc")


def test_fitted_pipeline_round_trips_through_skops_with_the_trusted_list(
    demo: pd.DataFrame, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    import skops.io

    result = run_sweep(demo, _features(demo), "target", n_estimators=[5])
    path = tmp_path / "m.skops"
    skops.io.dump(result.model, path)
    assert set(skops.io.get_untrusted_types(file=path)) <= set(SKOPS_TRUSTED_TYPES)
    loaded = skops.io.load(path, trusted=SKOPS_TRUSTED_TYPES)
    split = result.split
    assert score(loaded, split.test_x, split.test_y) == result.holdout_metrics
    assert (
        baseline_score(split.train_x, split.train_y, split.test_x, split.test_y)["accuracy"] < 0.7
    )


def test_grown_forests_score_as_forests_fitted_on_their_own(demo: pd.DataFrame) -> None:
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    from mlops_assets.training.pipeline import build_pipeline
    from mlops_assets.training.sweep import forest_cv_scores

    split = split_holdout(demo, _features(demo), "target", 0.2, 42)
    grown = forest_cv_scores(split, [20, 5, 10], 3, "f1_macro", 42)
    for n in (5, 10, 20):
        alone = cross_val_score(
            build_pipeline(split.train_x, n, 42),
            split.train_x,
            split.train_y,
            cv=StratifiedKFold(n_splits=3, shuffle=True, random_state=42),
            scoring="f1_macro",
        )
        assert grown[n] == list(alone), n
    # Different sizes really are different forests (the comparison above could not pass by
    # scoring one forest three times).
    assert grown[5] != grown[20]
