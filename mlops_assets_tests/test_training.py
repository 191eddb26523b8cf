"""Training without Dagster: the split, the sweep, the metrics."""

import math
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pandas as pd
import pytest

from mlops_assets.training.evaluate import baseline_score, score
from mlops_assets.training.pipeline import SKOPS_TRUSTED_TYPES, THREADED_ROWS, threads_for
from mlops_assets.training.sweep import grid, run_sweep, split_holdout


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
    # A fifth of 569 rows, and the classes' mix, in expectation: each row draws its side
    # (within three standard errors: 0.14 of the class share on 114 rows).
    assert 90 < len(first.test_x) < 140
    share = first.test_y.mean()
    assert abs(share - demo["target"].mean()) < 0.14
    assert sorted([*first.train_positions, *first.test_x.index]) == list(range(len(demo)))


def _landed(name: str, rows: int, seed: int) -> pd.DataFrame:
    """A landed file's validated rows: features, label, and the lineage raw_dataset adds."""
    from mlops_assets.sources import SOURCE_FILE, SOURCE_ROW

    frame = _blobs(rows, seed)
    frame[SOURCE_FILE] = pd.Categorical([name] * rows)
    frame[SOURCE_ROW] = np.arange(2, rows + 2)
    return frame


def test_a_row_keeps_its_side_of_the_holdout_when_files_are_added() -> None:
    """The champion's training rows are never in a later version's holdout: otherwise the gate
    scores the champion on rows it learned, and it wins on them."""
    from mlops_assets.sources import SOURCE_FILE, SOURCE_ROW

    first = _landed("a.csv", 4000, seed=1)
    joined = pd.concat([_landed("b.csv", 3000, seed=2), first], ignore_index=True)
    features = [c for c in first.columns if c.startswith("f") or c == "kind"]

    def sides(frame: pd.DataFrame) -> tuple[set[tuple[str, int]], set[tuple[str, int]]]:
        split = split_holdout(frame, features, "y", 0.2, 42)
        keys = list(zip(frame[SOURCE_FILE].astype(str), frame[SOURCE_ROW], strict=True))
        test = {keys[i] for i in frame.index.get_indexer(split.test_x.index)}
        train = {keys[i] for i in split.train_positions}
        assert not train & test and len(train) + len(test) == len(frame)
        return train, test

    champion_train, champion_test = sides(first)
    challenger_train, challenger_test = sides(joined)
    assert not champion_train & challenger_test
    assert champion_train <= challenger_train
    # The first file's rows are on the same side in both, whatever order the files come in.
    assert {k for k in challenger_test if k[0] == "a.csv"} == champion_test
    # Every class on both sides, a fifth of each held out (within three standard errors).
    for frame in (first, joined):
        split = split_holdout(frame, features, "y", 0.2, 42)
        held = split.test_y.value_counts() / frame["y"].value_counts()
        assert set(held.index) == set(split.train_y) == {0, 1, 2}
        assert (abs(held - 0.2) < 3 * np.sqrt(0.2 * 0.8 / frame["y"].value_counts())).all()


def test_a_class_of_two_rows_has_one_on_each_side() -> None:
    from mlops_assets.training.holdout import held_out

    labels = pd.Series(["a"] * 50 + ["rare"] * 2)
    for draws in (np.full(52, 0.9), np.full(52, 0.1)):
        mask = held_out(draws.copy(), labels, 0.2)
        assert mask[50:].sum() == 1


def test_sweep_picks_by_cross_validation_and_beats_the_baseline(demo: pd.DataFrame) -> None:
    result = run_sweep(demo, _features(demo), "target", n_estimators=[5, 50], metric="roc_auc")
    assert [c.params["n_estimators"] for c in result.candidates] == [5, 50]
    assert result.search == "full cross-validation"
    best = max(c.cv_score for c in result.candidates)
    assert result.best.cv_score >= best - 0.01  # the smaller forest only within noise of it
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

    result = run_sweep(demo, _features(demo), "target", n_estimators=[20, 5, 10])
    split = result.split
    grown = {c.params["n_estimators"]: c.cv_score for c in result.candidates}
    for n in (5, 10, 20):
        alone = cross_val_score(
            build_pipeline(split.train_x, n, 42),
            split.train_x,
            split.train_y,
            cv=StratifiedKFold(n_splits=3, shuffle=True, random_state=42),
            scoring="f1_macro",
        )
        assert grown[n] == pytest.approx(float(np.mean(alone)), abs=1e-12), n
    # Different sizes really are different forests (the comparison above could not pass by
    # scoring one forest three times).
    assert grown[5] != grown[20]


BOTH_FAMILIES = grid("random_forest", n_estimators=[30]) + grid(
    "hist_gradient_boosting",
    learning_rate=[0.3],
    max_leaf_nodes=[31],
    min_samples_leaf=[40],
    max_iter=[10],
)


def test_boosting_wins_where_missing_values_carry_the_signal() -> None:
    """A reading that is 0 for one class and missing for the other: the boosted trees learn
    where a null belongs; the forest sees the median (0) imputed in its place."""
    rng = np.random.default_rng(3)
    n = 1200
    label = rng.integers(0, 2, size=n)
    signal = np.where(label == 1, np.nan, 0.0)
    frame = pd.DataFrame({"signal": signal, "noise": rng.normal(0, 1, size=n), "y": label})
    result = run_sweep(frame, ["signal", "noise"], "y", BOTH_FAMILIES)
    by_family = {c.family: c.cv_score for c in result.candidates}
    assert result.best.family == "hist_gradient_boosting"
    assert by_family["hist_gradient_boosting"] > 0.99 > 0.7 > by_family["random_forest"]
    assert result.holdout_metrics["f1_macro"] > 0.99


def test_forest_wins_on_a_table_too_small_for_boosted_leaves() -> None:
    """90 rows: a boosted tree's leaves of at least 40 rows leave it no split to make on a
    cross-validation fold, while the forest learns the rule."""
    rng = np.random.default_rng(5)
    x = rng.uniform(0, 1, size=90)
    frame = pd.DataFrame({"x": x, "noise": rng.normal(size=90), "y": (x > 0.5).astype(int)})
    result = run_sweep(frame, ["x", "noise"], "y", BOTH_FAMILIES)
    by_family = {c.family: c.cv_score for c in result.candidates}
    assert result.best.family == "random_forest"
    assert by_family["random_forest"] > 0.9 > 0.5 > by_family["hist_gradient_boosting"]


def _blobs(rows: int, seed: int = 0) -> pd.DataFrame:
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=rows, n_features=8, n_informative=5, n_classes=3, random_state=seed
    )
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(8)])
    frame["kind"] = np.where(x[:, 0] > 0, "high", "low")  # a text column, for both families
    frame["y"] = y
    return frame


def test_large_data_races_candidates_on_samples_then_refits_the_winner_on_all_rows() -> None:
    frame = _blobs(6000)
    features = [c for c in frame.columns if c != "y"]
    candidates = grid("random_forest", n_estimators=[10, 20]) + grid(
        "hist_gradient_boosting", learning_rate=[0.1, 0.3], max_leaf_nodes=[15, 31]
    )
    lines: list[str] = []

    @contextmanager
    def beside_refit(alone: bool) -> Iterator[None]:
        # 4,800 rows: a refit below BOOSTING_THREADED_ROWS, on one thread.
        assert alone
        lines.append("<beside>")
        yield
        lines.append("</beside>")

    result = run_sweep(
        frame,
        features,
        "y",
        candidates,
        full_cv_rows=1000,
        max_search_rows=2400,
        min_search_rows=300,
        progress=lines.append,
        beside_refit=beside_refit,
    )
    train_rows = len(result.split.train_y)
    assert abs(train_rows - 4800) < 100  # four fifths of 6,000, each row drawing its side
    # Work for another thread (the later steps' imports) runs beside the refit only, never
    # beside the race's short fits.
    opened = lines.index("<beside>")
    assert lines.count("<beside>") == 1
    assert lines[opened - 1].startswith("refitting the best")
    # A short refit's threads are not the machine's doing: nothing said about cores.
    assert "core" not in lines[opened - 1]
    assert lines[opened + 1] == "</beside>"
    assert lines[opened + 2].startswith("refit done")
    lines = [line for line in lines if line not in ("<beside>", "</beside>")]
    assert result.search == "successive halving over 800, 2,400 rows"
    # Every candidate ran the first rung; only the best third went on to the larger sample.
    assert {c.rows for c in result.candidates} == {800, 2400}
    finalists = [c for c in result.candidates if c.rung == 2]
    assert len(finalists) == 2 and all(c.rows == 2400 for c in finalists)
    assert result.best in finalists
    eliminated = [c for c in result.candidates if c.rung == 1]
    assert max(c.cv_score for c in eliminated) <= max(
        c.cv_score for c in result.candidates if c.rung == 1 or c in finalists
    )
    # The winner is refitted on every training row, not on the sample it won on.
    fitted = result.model[-1]
    if result.best.family == "random_forest":
        assert fitted.estimators_[0].tree_.weighted_n_node_samples[0] == train_rows
    else:
        # Its bins were found on (a subsample of at most 200,000 of) all the rows it saw.
        assert fitted._bin_mapper.n_bins_non_missing_.max() > 200
    assert result.holdout_metrics["f1_macro"] > 0.8
    # Progress: the plan, each rung, the refit with an estimate; each line with elapsed time.
    assert lines[0].startswith(f"6 candidates on {train_rows:,} training rows: successive halving")
    assert any(line.startswith("rung 2/2: 2 candidates on 2,400 rows") for line in lines)
    assert any(line.startswith("refitting the best") for line in lines)
    assert all(line.endswith("s elapsed]") for line in lines)


def test_a_forest_stays_within_its_byte_budget(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import skops.io

    from mlops_assets.training import pipeline

    frame = _blobs(20_000, seed=1)
    features = [c for c in frame.columns if c != "y"]
    free = run_sweep(frame, features, "y", n_estimators=[40], full_cv_rows=10**9)
    monkeypatch.setattr(pipeline, "FOREST_BYTES_BUDGET", 3_000_000)
    bounded = run_sweep(frame, features, "y", n_estimators=[40], full_cv_rows=10**9)
    sizes = {}
    for name, result in (("free", free), ("bounded", bounded)):
        path = tmp_path / f"{name}.skops"
        skops.io.dump(result.model, path)
        sizes[name] = path.stat().st_size
    assert sizes["free"] > 6_000_000
    assert sizes["bounded"] <= 3_000_000 * 1.05
    assert bounded.holdout_metrics["f1_macro"] > 0.8


def test_forest_bounds_hold_at_any_row_count() -> None:
    from mlops_assets.training.pipeline import FOREST_BYTES_BUDGET, forest_bounds

    for rows in (500, 100_000, 10_000_000):
        for trees in (50, 200):
            bounds = forest_bounds(rows, trees, n_classes=3)
            nodes = 2 * bounds["max_leaf_nodes"] - 1
            assert trees * (nodes * (80 + 8 * 3) + 20_000) <= FOREST_BYTES_BUDGET
            assert bounds.get("max_samples", rows) <= 100_000


def test_boosted_pipeline_round_trips_through_skops(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import skops.io

    frame = _blobs(3000)
    frame.loc[::50, "f2"] = np.nan
    frame.loc[::70, "kind"] = None
    features = [c for c in frame.columns if c != "y"]
    result = run_sweep(frame, features, "y", grid("hist_gradient_boosting", learning_rate=[0.3]))
    path = tmp_path / "m.skops"
    skops.io.dump(result.model, path)
    assert set(skops.io.get_untrusted_types(file=path)) <= set(SKOPS_TRUSTED_TYPES)
    loaded = skops.io.load(path, trusted=SKOPS_TRUSTED_TYPES)
    assert score(loaded, result.split.test_x, result.split.test_y) == result.holdout_metrics


def test_a_long_refit_reports_while_it_runs() -> None:
    import time

    from mlops_assets.training.sweep import _Clock

    lines: list[str] = []
    clock = _Clock(lines.append)
    with clock.heartbeat("refitting on 8,000,000 rows", expected=100.0, every=0.05):
        time.sleep(0.3)
    assert len(lines) >= 3
    assert lines[0].startswith("refitting on 8,000,000 rows: 0 s (at most ~100 s expected)")
    assert all(line.endswith("s elapsed]") for line in lines)
    count = len(lines)
    time.sleep(0.15)
    assert len(lines) == count  # the heartbeat stops with the call


def test_a_boosting_refit_reports_its_iterations_while_it_runs(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import re

    from mlops_assets.training import sweep

    monkeypatch.setattr(sweep, "HEARTBEAT_SECONDS", 0.05)
    frame = _blobs(10_000)
    features = [c for c in frame.columns if c != "y"]
    candidates = grid(
        "hist_gradient_boosting", learning_rate=[0.1], max_leaf_nodes=[31], max_iter=[300]
    )
    lines: list[str] = []
    result = run_sweep(frame, features, "y", candidates, progress=lines.append)
    refit = lines.index(next(line for line in lines if line.startswith("refitting the best")))
    beats = lines[refit + 1 : -1]
    assert lines[-1].startswith("refit done")
    counts = [
        int(found[1])
        for found in map(
            re.compile(
                r"refitting on [\d,]+ rows: \d+ s, (\d+) of at most 300 boosting iterations"
            ).match,
            beats,
        )
        if found
    ]
    # The lines follow the fit as it goes, each from the estimator's own state.
    assert len(counts) >= 2 and counts == sorted(counts) and counts[-1] > counts[0]
    assert any(re.search(r"\(~[\d.]+ s each: at most ~\d+ s more\)", line) for line in beats)
    assert all("stops after 10 without improvement" in line for line in beats if "boosting" in line)
    # Read once the fit has ended, the same account holds for the whole fit.
    watch = sweep.BoostingProgress()
    watch.estimator = boosted = result.model.steps[-1][1]
    best = int(np.argmax(boosted.validation_score_))
    assert watch() == (
        f"{boosted.n_iter_} of at most 300 boosting iterations; best validation score at "
        f"iteration {best}, stops after 10 without improvement"
    )


def _openmp_threads() -> set[int]:
    from threadpoolctl import threadpool_info

    return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "openmp"}


def test_small_fits_and_predictions_run_openmp_on_one_thread() -> None:
    import sklearn.ensemble  # noqa: F401  (loads scikit-learn's OpenMP runtime)
    from threadpoolctl import threadpool_limits

    # Two threads to start from, whatever this machine or OMP_NUM_THREADS says.
    with threadpool_limits(limits=2, user_api="openmp"):
        assert _openmp_threads() == {2}
        with threads_for(THREADED_ROWS - 1):
            assert _openmp_threads() == {1}
        assert _openmp_threads() == {2}
        with threads_for(THREADED_ROWS):
            assert _openmp_threads() == {2}


@pytest.mark.parametrize(
    ("free", "refit_threads", "said"),
    [(None, 2, ""), (1, 1, " on 1 core: the rest of the machine was busy")],
)
def test_boosting_fits_below_its_threshold_run_openmp_on_one_thread_a_longer_one_on_the_free_cores(
    monkeypatch: pytest.MonkeyPatch, free: int | None, refit_threads: int, said: str
) -> None:
    """A race's boosting fits keep to one thread (two stall each other whenever something else
    wants a core); a refit on BOOSTING_THREADED_ROWS rows or more takes the cores the rest of
    the machine left free while the sweep ran: all configured when it stayed quiet, one when
    it kept a core busy. The threshold is lowered so that a small table shows both."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from threadpoolctl import threadpool_limits

    from mlops_assets.training import pipeline
    from mlops_assets.training.cores import OtherLoad

    seen: list[tuple[int, set[int]]] = []
    fit = HistGradientBoostingClassifier.fit

    def recording(self, X, y, **kwargs):  # type: ignore[no-untyped-def]
        seen.append((len(X), _openmp_threads()))
        return fit(self, X, y, **kwargs)

    monkeypatch.setattr(HistGradientBoostingClassifier, "fit", recording)
    monkeypatch.setattr(pipeline, "BOOSTING_THREADED_ROWS", 3000)
    monkeypatch.setattr(OtherLoad, "fit_cores", lambda self: free)
    frame = _blobs(6000)
    candidates = grid("hist_gradient_boosting", learning_rate=[0.1, 0.3], max_leaf_nodes=[7, 15])
    lines: list[str] = []
    with threadpool_limits(limits=2, user_api="openmp"):
        result = run_sweep(
            frame,
            [c for c in frame.columns if c != "y"],
            "y",
            candidates,
            full_cv_rows=1000,
            max_search_rows=2400,
            min_search_rows=1200,
            progress=lines.append,
        )
        assert _openmp_threads() == {2}
    race = [threads for rows, threads in seen if rows < 3000]
    refit = [threads for rows, threads in seen if rows >= 3000]
    # Rungs of 1,200 and 2,400 rows (two thirds fitted), then the refit on all training rows
    # (about 4,800) but the tenth held out to stop on.
    train_rows = len(result.split.train_y)
    stop_rows = math.ceil(train_rows / 10)
    assert [rows for rows, _ in seen] == [800] * 4 + [1600] * 2 + [train_rows - stop_rows]
    assert race and all(threads == {1} for threads in race)
    assert refit == [{refit_threads}]
    [refitting] = [line for line in lines if line.startswith("refitting the best")]
    assert re.search(rf"on all {train_rows:,} training rows{said} [(\[]", refitting), refitting


@pytest.mark.skipif(
    not os.path.exists("/proc/stat"), reason="the rest of the machine is read from /proc/stat"
)
def test_the_rest_of_the_machine_is_read_without_this_process() -> None:
    """A process that keeps a core busy is seen, and takes that core from a long fit; this
    process's own work is not counted against it."""
    import subprocess
    import sys

    from mlops_assets.training.cores import OtherLoad, free_cores

    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.2)  # past its start-up
        load = OtherLoad()
        time.sleep(1.0)
        used = load.cores_used()
    finally:
        busy.kill()
        busy.wait()
    assert used is not None and used >= 0.7
    cores = os.cpu_count() or 1
    assert free_cores(used, cores) <= max(1, cores - 1)

    load = OtherLoad()
    started = time.monotonic()
    while time.monotonic() - started < 1.0:
        pass  # this process, busy
    used = load.cores_used()
    assert used is not None and used < 0.5


def test_a_core_is_free_only_when_the_rest_of_the_machine_left_it_nearly_idle() -> None:
    from mlops_assets.training.cores import free_cores

    assert free_cores(0.0, 2) == 2
    assert free_cores(0.2, 2) == 2
    assert free_cores(0.3, 2) == 1
    assert free_cores(1.0, 2) == 1
    assert free_cores(3.0, 2) == 1
    assert free_cores(2.1, 8) == 6


def test_a_tie_on_the_sample_goes_to_the_best_score_when_the_refit_sees_far_more_rows() -> None:
    from mlops_assets.training.sweep import Candidate, choose

    def finalist(leaves: int, score: float, nodes: int) -> Candidate:
        return Candidate(
            "hist_gradient_boosting",
            {"max_leaf_nodes": leaves},
            cv_score=score,
            validation_rows=6_667,
            nodes=nodes,
            rung=2,
        )

    # 0.0027 apart on 6,667 validation rows: within one standard error (0.0035).
    small, large = finalist(31, 0.9067, 15_006), finalist(255, 0.9094, 40_293)
    assert choose([large, small]) is small  # refit on the rows compared on: the smaller
    assert choose([large, small], beyond_sample=True) is large
    # Beyond noise, the best wins either way.
    clearly = finalist(255, 0.9200, 40_293)
    assert choose([clearly, small]) is clearly
