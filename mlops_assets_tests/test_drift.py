"""Drift: found on a shifted copy of the data, not on a resample of it, for numeric and
categorical features alike."""

import time

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer

from mlops_assets.drift import (
    COLUMNS,
    MISSING,
    DriftThresholds,
    detect_drift,
    is_drifted,
    numeric_psi,
    psi,
)


@pytest.fixture(scope="module")
def cancer() -> pd.DataFrame:
    return load_breast_cancer(as_frame=True).frame


def halves(frame: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    order = np.random.default_rng(seed).permutation(len(frame))
    middle = len(frame) // 2
    return frame.iloc[order[:middle]], frame.iloc[order[middle:]]


def features_of(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c != "target"]


def test_table_shape_and_types(cancer: pd.DataFrame) -> None:
    table, summary = detect_drift(cancer, cancer, features_of(cancer))
    assert tuple(table.columns) == COLUMNS
    assert table["feature"].tolist() == features_of(cancer)
    assert set(table["kind"]) == {"numeric"}
    assert table["drifted"].dtype == bool
    # identical frames: nothing moved at all
    assert np.allclose(table["psi"], 0.0)
    assert np.allclose(table["p_value"], 1.0)
    assert not summary.any_drift and summary.drifted_features == ()
    assert summary.reference_rows == summary.current_rows == 569


def test_shifted_copy_drifts_and_only_there(cancer: pd.DataFrame) -> None:
    reference, current = halves(cancer, seed=0)
    current = current.copy()
    current["mean radius"] = current["mean radius"] * 1.5
    current["worst area"] = current["worst area"] + 2 * cancer["worst area"].std()
    table, summary = detect_drift(reference, current, features_of(cancer))
    assert summary.any_drift
    assert set(summary.drifted_features) == {"mean radius", "worst area"}
    shifted = table.set_index("feature").loc[["mean radius", "worst area"]]
    assert (shifted["psi"] > 1.0).all()
    assert (shifted["p_value"] < 1e-10).all()
    assert summary.worst_feature in {"mean radius", "worst area"}
    assert "2 of 30 features drifted" in summary.reason


def test_smaller_shifts_are_still_found(cancer: pd.DataFrame) -> None:
    reference, current = halves(cancer, seed=3)
    current = current.copy()
    current["mean texture"] = current["mean texture"] + 0.75 * cancer["mean texture"].std()
    _, summary = detect_drift(reference, current, features_of(cancer))
    assert summary.drifted_features == ("mean texture",)


def test_resamples_do_not_drift(cancer: pd.DataFrame) -> None:
    features = features_of(cancer)
    # Bootstrap resamples against the full data, and disjoint half splits.
    for seed in range(5):
        rng = np.random.default_rng(seed)
        bootstrap = cancer.iloc[rng.integers(0, len(cancer), len(cancer))]
        _, summary = detect_drift(cancer, bootstrap, features)
        assert not summary.any_drift, (seed, summary.reason)
    alarms = [detect_drift(*halves(cancer, seed), features)[1].any_drift for seed in range(20)]
    # 284 vs 285 rows is a small sample for 30 features x 10 bins; a rare false alarm is
    # possible, a habit is not (without the multiple-testing correction it is ~15%).
    assert sum(alarms) <= 1, alarms


def test_large_samples_do_not_flag_tiny_shifts() -> None:
    rng = np.random.default_rng(0)
    n = 1_000_000
    reference = pd.DataFrame({"x": rng.normal(size=n), "c": rng.choice(list("abcd"), n)})
    current = pd.DataFrame(
        {
            "x": rng.normal(0.05, 1.0, size=n),
            "c": rng.choice(list("abcd"), n, p=[0.26, 0.25, 0.25, 0.24]),
        }
    )
    started = time.perf_counter()
    table, summary = detect_drift(reference, current, max_ks_rows=100_000)
    elapsed = time.perf_counter() - started
    p_values = dict(zip(table["feature"], table["p_value"], strict=True))
    # The tests notice (p tiny), but the shift is far below the PSI floor: no drift.
    assert p_values["x"] < 1e-6
    assert p_values["c"] < 1e-6
    assert (table["psi"] < 0.01).all()
    assert not summary.any_drift
    assert elapsed < 30, elapsed  # vectorised: ~1 s on one core


def test_categorical_drift_on_changed_shares() -> None:
    rng = np.random.default_rng(0)
    reference = pd.DataFrame(
        {"colour": rng.choice(["red", "green", "blue"], 5000, p=[0.5, 0.3, 0.2])}
    )
    resample = reference.sample(frac=1.0, replace=True, random_state=1)
    _, summary = detect_drift(reference, resample)
    assert not summary.any_drift

    changed = pd.DataFrame(
        {"colour": rng.choice(["red", "green", "blue"], 5000, p=[0.2, 0.3, 0.5])}
    )
    table, summary = detect_drift(reference, changed)
    assert summary.drifted_features == ("colour",)
    row = table.iloc[0]
    assert row["kind"] == "categorical"
    assert row["psi"] > 0.2 and row["p_value"] < 1e-10


def test_unseen_and_vanished_categories() -> None:
    rng = np.random.default_rng(0)
    reference = pd.DataFrame({"city": rng.choice(["paris", "rome", "oslo"], 4000)})
    # A new category takes a third of the rows: drift, and no error.
    current = pd.DataFrame({"city": rng.choice(["paris", "rome", "lima"], 4000)})
    table, summary = detect_drift(reference, current)
    assert summary.drifted_features == ("city",)
    assert np.isfinite(table["psi"]).all() and np.isfinite(table["statistic"]).all()
    # One stray unseen value among thousands is not drift.
    stray = reference.sample(frac=1.0, random_state=2).reset_index(drop=True)
    stray.loc[0, "city"] = "lima"
    _, summary = detect_drift(reference, stray)
    assert not summary.any_drift


def test_categorical_kinds_and_missing_values() -> None:
    rng = np.random.default_rng(0)
    n = 3000
    reference = pd.DataFrame(
        {
            "flag": rng.random(n) < 0.3,
            "grade": pd.Categorical(
                rng.choice(["a", "b", "c"], n), categories=["a", "b", "c", "d"]
            ),
            "code": rng.choice([1, 2, 3], n),
        }
    )
    current = reference.sample(frac=1.0, random_state=1).reset_index(drop=True)
    current.loc[: n // 2, "grade"] = np.nan  # half the grades went missing
    table, summary = detect_drift(reference, current, categorical=["code"])
    kinds = dict(zip(table["feature"], table["kind"], strict=True))
    assert kinds == {"flag": "categorical", "grade": "categorical", "code": "categorical"}
    assert summary.drifted_features == ("grade",)


def test_numeric_missing_rate_and_constant_features() -> None:
    rng = np.random.default_rng(0)
    n = 2000
    reference = pd.DataFrame({"x": rng.normal(size=n), "const": np.full(n, 5.0)})
    current = reference.copy()
    current.loc[: n // 3, "x"] = np.nan  # a third of x went missing
    current["const"] = 7.0  # a constant that moved
    _, summary = detect_drift(reference, current)
    assert set(summary.drifted_features) == {"x", "const"}
    # unchanged constant: no drift, no error
    _, summary = detect_drift(reference, reference.assign(x=rng.normal(size=n)))
    assert not summary.any_drift


def test_text_in_a_numeric_column_counts_as_missing() -> None:
    rng = np.random.default_rng(0)
    reference = pd.DataFrame({"x": rng.normal(size=1000)})
    current = pd.DataFrame({"x": ["n/a"] * 400 + [str(v) for v in rng.normal(size=600)]})
    table, summary = detect_drift(reference, current)
    assert table["kind"].tolist() == ["numeric"]
    assert summary.any_drift


def test_the_rule() -> None:
    t = DriftThresholds()
    assert is_drifted(0.25, 0.9, t)  # PSI alone
    assert is_drifted(0.15, 0.001, t)  # significant and above the floor
    assert not is_drifted(0.05, 1e-30, t)  # significant but tiny: huge samples do this
    assert not is_drifted(0.15, 0.05, t)  # moderate PSI, not significant
    assert not is_drifted(0.15, float("nan"), t)
    # Bonferroni: with 30 tests, p must be below 0.01 / 30
    assert not is_drifted(0.15, 0.001, t, n_tests=30)
    assert is_drifted(0.15, 0.0001, t, n_tests=30)
    assert is_drifted(0.15, 0.001, DriftThresholds(correction="none"), n_tests=30)


def test_thresholds_are_configurable(cancer: pd.DataFrame) -> None:
    reference, current = halves(cancer, seed=0)
    strict = DriftThresholds(psi_threshold=0.01, p_value_threshold=0.5, psi_floor=0.0)
    _, summary = detect_drift(reference, current, features_of(cancer), thresholds=strict)
    assert summary.any_drift  # everything moves a little between two halves
    metadata = summary.as_metadata()
    assert metadata["psi_threshold"] == 0.01 and metadata["psi_floor"] == 0.0
    assert metadata["n_drifted"] == len(summary.drifted_features)
    with pytest.raises(ValueError):
        DriftThresholds(psi_floor=0.5, psi_threshold=0.2)
    with pytest.raises(ValueError):
        DriftThresholds(p_value_threshold=0.0)


def test_non_string_column_names() -> None:
    rng = np.random.default_rng(0)
    reference = pd.DataFrame({0: rng.normal(size=1000), 1: rng.choice(["a", "b"], 1000)})
    current = reference.copy()
    current[0] = current[0] + 3.0
    table, summary = detect_drift(reference, current)
    assert table["feature"].tolist() == ["0", "1"]
    assert summary.drifted_features == ("0",)


def test_bad_inputs() -> None:
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0]})
    with pytest.raises(ValueError, match="current frame: y"):
        detect_drift(frame.assign(y=1), frame, ["x", "y"])
    with pytest.raises(ValueError, match="rows on both sides"):
        detect_drift(frame, frame.iloc[:0])


def test_psi_helpers() -> None:
    assert psi(np.array([0.5, 0.5]), np.array([0.5, 0.5])) == 0.0
    assert psi(np.array([1.0, 0.0]), np.array([0.0, 1.0])) > 10  # finite despite empty bins
    rng = np.random.default_rng(0)
    same = numeric_psi(rng.normal(size=50_000), rng.normal(size=50_000))
    moved = numeric_psi(rng.normal(size=50_000), rng.normal(1.0, 1.0, size=50_000))
    assert same < 0.01 < 0.2 < moved
    assert MISSING == "<missing>"
