"""Split, sweep and pick: a stratified holdout is put aside first; candidates of every family are
compared by cross-validation on the rest, so the holdout stays unseen until the gate scores it.

The comparison's cost is bounded whatever the row count. Up to `full_cv_rows` training rows,
every candidate is cross-validated on all of them. Beyond, candidates race by successive
halving over rows (as scikit-learn's HalvingGridSearchCV does): every candidate is
cross-validated on a small stratified sample, the best 1/`factor` go on to a sample `factor`
times larger, up to `max_search_rows`. The winner is then refit on all training rows.
"""

import itertools
import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import get_scorer
from sklearn.model_selection import StratifiedKFold, StratifiedShuffleSplit, train_test_split

from mlops_assets.training.cores import OtherLoad
from mlops_assets.training.evaluate import METRICS, baseline_score, frame_fingerprint, score
from mlops_assets.training.holdout import holdout_positions
from mlops_assets.training.pipeline import (
    RANDOM_FOREST,
    Cores,
    build_pipeline,
    fit_limit,
    fit_threads,
    long_fit,
    openmp_threads,
    tree_nodes,
)

_SKLEARN_SCORING = {
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced_accuracy",
    "f1_macro": "f1_macro",
    "roc_auc": "roc_auc_ovr",
}

Progress = Callable[[str], None]


class Split:
    """The training and holdout rows of one frame. The holdout is taken once (it is scored);
    the training rows are kept as positions and taken when asked, so a refit on some of them
    never holds them all twice: at ten million rows each copy is gigabytes."""

    def __init__(
        self, features: pd.DataFrame, labels: pd.Series, train: np.ndarray, test: np.ndarray
    ) -> None:
        self._features: pd.DataFrame | None = features
        self._labels = labels
        self.train_positions = train
        self.test_x = features.iloc[test]
        self.test_y = labels.iloc[test]
        # What a logged model's input example shows.
        self.example = features.iloc[train[:5]]

    def train_rows(self, positions: np.ndarray | None = None) -> tuple[pd.DataFrame, pd.Series]:
        """The training rows at `positions` (positions among the training rows), all of them
        by default."""
        if self._features is None:
            raise RuntimeError("the training rows were let go of after the refit took them")
        chosen = self.train_positions if positions is None else self.train_positions[positions]
        return self._features.iloc[chosen], self._labels.iloc[chosen]

    def let_go(self) -> None:
        """Drop the reference to the frame's feature columns: once the refit has taken its
        rows, the frame (when nothing else holds it) is freed before the model copies them."""
        self._features = None

    @property
    def train_x(self) -> pd.DataFrame:
        return self.train_rows()[0]

    @property
    def train_y(self) -> pd.Series:
        return self._labels.iloc[self.train_positions]

    @property
    def holdout_fingerprint(self) -> str:
        return frame_fingerprint(self.test_x.assign(__label=self.test_y))


@dataclass
class Candidate:
    family: str
    params: dict[str, Any]
    cv_score: float = float("nan")
    cv_std: float = float("nan")
    rows: int = 0  # training rows of the last rung it was scored on
    rung: int = 0
    fit_seconds: float = 0.0  # mean fit time per split at that rung
    nodes: int = 0  # tree nodes of its model at that rung: its size and serving cost
    fit_rows: int = 0
    validation_rows: int = 0

    def fit_seconds_at_most(self, rows: int) -> float:
        """Its last rung's fit time scaled to `rows`. An upper bound rather than a forecast: a
        fit on a sample is mostly fixed cost (measured: 4-5x the real refit time at 1M and
        10M rows), and that scales up with it."""
        return self.fit_seconds * rows / self.fit_rows if self.fit_rows else 0.0

    @property
    def label(self) -> str:
        shown = ", ".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.family}({shown})"

    def as_row(self, metric: str) -> dict[str, Any]:
        return {
            "family": self.family,
            **self.params,
            f"cv_{metric}": self.cv_score,
            "cv_std": self.cv_std,
            "cv_rows": self.rows,
            "rung": self.rung,
            "fit_s": round(self.fit_seconds, 2),
            "tree_nodes": self.nodes,
        }


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
    search: str = "full cross-validation"
    refit_seconds: float = 0.0


def grid(family: str, **values: Sequence[Any]) -> list[Candidate]:
    """Every combination of the values given for one family."""
    names = [name for name, options in values.items() if options]
    combos = itertools.product(*(values[name] for name in names))
    return [Candidate(family, dict(zip(names, combo, strict=True))) for combo in combos]


def split_holdout(
    frame: pd.DataFrame, features: list[str], target: str, test_size: float, seed: int
) -> Split:
    """Deterministic for a given frame and seed: the gate recomputes the same holdout. Each
    row's side is fixed by its file and line (see `holdout`), so rows keep it when files are
    added."""
    labels = frame[target]
    train, test = holdout_positions(frame, labels, test_size, seed)
    return Split(_columns(frame, features), labels, train, test)


def holdout_for(record: dict[str, Any], frame: pd.DataFrame) -> Split:
    """The holdout a trained_model record was scored on, rebuilt from the same frame (with its
    lineage columns); the gate and the report never ask for its training rows."""
    labels = frame[record["target"]]
    _, test = holdout_positions(frame, labels, record["test_size"], record["seed"])
    return Split(_columns(frame, record["features"]), labels, np.empty(0, dtype=np.intp), test)


def _columns(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    # Copy-on-write: the selection shares the columns instead of copying them before the rows
    # are taken.
    with pd.option_context("mode.copy_on_write", True):
        return frame[columns]


def stratified_sample(labels: pd.Series, rows: int, seed: int) -> np.ndarray:
    """Positions of `rows` rows with the label mix of the whole."""
    if rows >= len(labels):
        return np.arange(len(labels))
    positions, _ = train_test_split(
        np.arange(len(labels)), train_size=rows, random_state=seed, stratify=labels
    )
    return np.sort(positions)


def races(train_rows: int, candidates: int, full_cv_rows: int) -> bool:
    """Whether the sweep races candidates over samples instead of cross-validating them all."""
    return train_rows > full_cv_rows and candidates > 1


def rung_sizes(rows: int, candidates: int, factor: int, min_rows: int, max_rows: int) -> list[int]:
    """Rows per rung: the last at `max_rows` (or all rows), each earlier one `factor` times
    smaller, as many rungs as halving needs to leave about `factor` candidates, none below
    `min_rows`."""
    top = min(rows, max_rows)
    rungs = max(1, math.ceil(math.log(max(candidates, 1), factor)))
    sizes = [top // factor**i for i in range(rungs)]
    return sorted({max(min(size, top), min(min_rows, top)) for size in sizes})


# From this many times the race's top rung, the refit's rows are "beyond the sample" (choose).
BEYOND_SAMPLE = 2
# Seconds between the lines a long refit prints while it runs.
HEARTBEAT_SECONDS = 15.0


class _Clock:
    """Progress lines: milestones always, per-split lines at most every `every` seconds, so a
    long sweep never goes quiet and a short one does not flood the log."""

    def __init__(self, progress: Progress, every: float = 5.0) -> None:
        self.started = self.last = time.monotonic()
        self.progress = progress
        self.every = every

    @contextmanager
    def heartbeat(
        self,
        doing: str,
        expected: float,
        every: float = HEARTBEAT_SECONDS,
        watch: "BoostingProgress | None" = None,
    ) -> Iterator[None]:
        """A line every `every` seconds while one long call (a refit) runs, so it never goes
        quiet: the call itself cannot report. With a `watch`, the line says how far the fit
        has got (looked at every second, so its pace is measured between looks)."""
        done = threading.Event()
        started = time.monotonic()

        def beat() -> None:
            due = started + every
            while not done.wait(min(every, 1.0)):
                state = watch() if watch is not None else None
                now = time.monotonic()
                if now < due:
                    continue
                due += every
                spent = now - started
                if state:
                    hint = f", {state}"
                else:
                    hint = f" (at most ~{expected:.0f} s expected)" if expected > spent else ""
                self.say(f"{doing}: {spent:.0f} s{hint}")

        thread = threading.Thread(target=beat, name="sweep-heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()

    def say(self, message: str, milestone: bool = True) -> None:
        now = time.monotonic()
        if milestone or now - self.last >= self.every:
            self.last = now
            self.progress(f"{message} [{now - self.started:.0f} s elapsed]")


class BoostingProgress:
    """How far a boosting fit has got, read from the heartbeat's thread while it runs.
    scikit-learn has no callback, but HistGradientBoosting appends each iteration's validation
    score to `validation_score_` as it goes (its early stopping reads them), so the iterations
    done, the pace and the best iteration so far can be read off the estimator."""

    def __init__(self) -> None:
        self.estimator: Any = None
        self._first: tuple[float, int] | None = None  # (when, iterations) at the first look

    def __call__(self) -> str | None:
        found = getattr(self.estimator, "validation_score_", None)
        # A list while the fit runs, an array once it has ended.
        scores = [] if found is None else list(found)
        # The first score is the baseline's, before any iteration.
        iterations = len(scores) - 1
        if iterations < 1:
            return None
        now = time.monotonic()
        if self._first is None:
            self._first = (now, iterations)
        since, first = self._first
        limit = int(self.estimator.max_iter)
        state = f"{iterations} of at most {limit} boosting iterations"
        if iterations > first:
            pace = (now - since) / (iterations - first)
            state += f" (~{pace:.2g} s each: at most ~{pace * (limit - iterations):.0f} s more)"
        best = int(np.argmax(scores))
        return (
            f"{state}; best validation score at iteration {best}, stops after "
            f"{self.estimator.n_iter_no_change} without improvement"
        )


def _validation_splits(
    y: pd.Series, folds: int, seed: int, single: bool
) -> list[tuple[np.ndarray, np.ndarray]]:
    """k stratified folds, or (racing on a sample) one stratified split with the same share
    held out: a third of the cost, and the next rung's larger sample makes up the noise."""
    if single:
        splitter: Any = StratifiedShuffleSplit(n_splits=1, test_size=1 / folds, random_state=seed)
    else:
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(y)), y))


def _score_rung(
    candidates: list[Candidate],
    x: pd.DataFrame,
    y: pd.Series,
    splits: list[tuple[np.ndarray, np.ndarray]],
    scoring: str,
    seed: int,
    n_classes: int,
    rung: int,
    metric: str,
    clock: _Clock,
    free_cores: Cores,
) -> None:
    """Score each candidate on every split. Forests that differ only in size share one
    warm-started forest per split: a seeded forest's first n trees are the forest of n trees,
    so each split fits max(sizes) trees once and scores every size exactly as
    cross_val_score would."""
    scorer = get_scorer(scoring)
    forests = sorted(
        (c for c in candidates if c.family == RANDOM_FOREST),
        key=lambda c: int(c.params.get("n_estimators", 100)),
    )
    groups: list[list[Candidate]] = [forests] if forests else []
    groups += [[c] for c in candidates if c.family != RANDOM_FOREST]
    for group in groups:
        scores: dict[int, list[float]] = {id(c): [] for c in group}
        nodes: dict[int, list[int]] = {id(c): [] for c in group}
        seconds: dict[int, float] = {id(c): 0.0 for c in group}
        first = group[0]
        label = first.label if len(group) == 1 else f"{RANDOM_FOREST} x{len(group)} sizes"
        for number, (train, test) in enumerate(splits, start=1):
            fold_x, fold_y = x.iloc[train], y.iloc[train]
            pipeline = build_pipeline(
                fold_x, seed=seed, family=first.family, params=first.params, n_classes=n_classes
            )
            if first.family == RANDOM_FOREST:
                pipeline.set_params(model__warm_start=True)
            started = time.monotonic()
            for candidate in group:
                if candidate.family == RANDOM_FOREST:
                    pipeline.set_params(model__n_estimators=int(candidate.params["n_estimators"]))
                with fit_threads(first.family, len(train), free_cores):
                    pipeline.fit(fold_x, fold_y)
                    # Warm-started, a size's fit is every tree grown so far in this split.
                    seconds[id(candidate)] += time.monotonic() - started
                    scored = scorer(pipeline, x.iloc[test], y.iloc[test])
                scores[id(candidate)].append(float(scored))
                nodes[id(candidate)].append(tree_nodes(pipeline))
            spent = seconds[id(group[-1])] / number
            left = spent * (len(splits) - number)
            clock.say(
                f"rung {rung}: {label} split {number}/{len(splits)}, fitted on {len(train):,} "
                f"rows, {metric}={scores[id(group[-1])][-1]:.4f}"
                + (f", ~{left:.0f} s left for it" if left >= 1 else ""),
                milestone=False,
            )
        for candidate in group:
            candidate.cv_score = float(np.mean(scores[id(candidate)]))
            candidate.cv_std = float(np.std(scores[id(candidate)]))
            candidate.rows = len(x)
            candidate.rung = rung
            candidate.fit_seconds = seconds[id(candidate)] / len(splits)
            candidate.nodes = int(np.mean(nodes[id(candidate)]))
            candidate.fit_rows = len(splits[0][0])
            candidate.validation_rows = sum(len(test) for _, test in splits)


def choose(finalists: list[Candidate], beyond_sample: bool = False) -> Candidate:
    """The smallest model whose score is within the noise of the best one's: one binomial
    standard error of the best score over the rows it was validated on. Smallest is counted
    (tree nodes of the fitted candidate), so the choice is the same on every run; a smaller
    model is cheaper to refit, store and serve.

    `beyond_sample`: the winner is refit on several times the rows the finalists were compared
    on. A tie on the sample is then not a tie on the data: capacity pays more with more rows
    (on 20,000 rows the 255-leaf model led the 31-leaf one by 0.002-0.003, within noise, and on
    800,000 it scored 0.948 against 0.925), so the best score wins."""
    scored = [c for c in finalists if c.cv_score == c.cv_score]
    if not scored:
        return min(finalists, key=_size)
    best = max(scored, key=lambda c: c.cv_score)
    if beyond_sample:
        return best
    p = min(max(best.cv_score, 0.0), 1.0)
    noise = math.sqrt(p * (1 - p) / max(best.validation_rows, 1))
    near = [c for c in scored if c.cv_score >= best.cv_score - noise]
    return min(near, key=lambda c: (c.nodes, _size(c), -c.cv_score))


def _size(candidate: Candidate) -> int:
    return int(candidate.params.get("n_estimators", candidate.params.get("max_leaf_nodes", 0)))


def _rank(candidate: Candidate) -> tuple[int, float, int]:
    """Those that reached a later rung first (their scores are on more rows), then by score."""
    score = candidate.cv_score if candidate.cv_score == candidate.cv_score else float("-inf")
    return (candidate.rung, score, -_size(candidate))


def _refit(
    split: Split,
    train_y: pd.Series,
    best: Candidate,
    seed: int,
    n_classes: int,
    keep: bool,
    threads: int | None,
    watch: BoostingProgress | None = None,
) -> Any:
    """The winner fitted on every training row. Boosting stops early on a tenth of them: that
    tenth is taken here and handed over as X_val, because the model would otherwise copy all
    the rows again to split them itself."""
    fit_x, fit_y = split.train_rows()
    model = build_pipeline(
        fit_x, seed=seed, family=best.family, params=best.params, n_classes=n_classes
    )
    step = model.steps[-1][1]
    if watch is not None:
        watch.estimator = step
    if len(model.steps) > 1 or getattr(step, "early_stopping", False) is not True:
        if not keep:
            split.let_go()
        with openmp_threads(threads):
            return model.fit(fit_x, fit_y)
    del fit_x, fit_y
    fit, held = train_test_split(
        np.arange(len(train_y)),
        test_size=step.validation_fraction,
        random_state=seed,
        stratify=train_y,
    )
    fit_x, fit_y = split.train_rows(fit)
    val_x, val_y = split.train_rows(held)
    if not keep:
        split.let_go()
    with openmp_threads(threads):
        return model.fit(fit_x, fit_y, model__X_val=val_x, model__y_val=val_y)


def run_sweep(
    frame: pd.DataFrame | Split,
    features: list[str],
    target: str,
    candidates: list[Candidate] | None = None,
    metric: str = "f1_macro",
    test_size: float = 0.2,
    seed: int = 42,
    cv_folds: int = 3,
    *,
    n_estimators: list[int] | None = None,
    full_cv_rows: int = 6_000,
    max_search_rows: int = 20_000,
    min_search_rows: int = 2_000,
    factor: int = 3,
    progress: Progress | None = None,
    keep_training_rows: bool = True,
    beside_refit: Callable[[bool], AbstractContextManager[Any]] = lambda alone: nullcontext(),
) -> SweepResult:
    """`frame` is the validated data, or its Split when the caller has let go of the frame;
    with `keep_training_rows=False` the split lets go of it too before the refit's model
    copies the rows (at ten million rows, gigabytes). `beside_refit(alone)` is entered around
    the refit, `alone` when it fits on one thread: work for another thread while it fits."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric '{metric}': choose one of {', '.join(METRICS)}")
    if candidates is None:
        candidates = grid(RANDOM_FOREST, n_estimators=n_estimators or [])
    if not candidates:
        raise ValueError("the sweep needs at least one candidate (a family with a grid)")
    clock = _Clock(progress or (lambda _: None))
    # What the rest of the machine uses from here on decides the cores of a long fit.
    others = OtherLoad()
    if isinstance(frame, Split):
        split = frame
    else:
        if len(frame) >= 1_000_000:
            clock.say(f"holding out {test_size:.0%} of {len(frame):,} rows for the gate")
        split = split_holdout(frame, features, target, test_size, seed)
    train_y = split.train_y
    n_classes = int(train_y.nunique())
    scoring = _SKLEARN_SCORING[metric]
    if metric == "roc_auc" and n_classes == 2:
        scoring = "roc_auc"
    rows = len(train_y)
    halving = races(rows, len(candidates), full_cv_rows)
    sizes = (
        rung_sizes(rows, len(candidates), factor, min_search_rows, max_search_rows)
        if halving
        else [rows]
    )
    search = (
        f"successive halving over {', '.join(f'{s:,}' for s in sizes)} rows"
        if halving
        else "full cross-validation"
    )
    clock.say(f"{len(candidates)} candidates on {rows:,} training rows: {search}")
    alive = list(candidates)
    for rung, size in enumerate(sizes, start=1):
        x, y = split.train_rows(stratified_sample(train_y, size, seed + rung))
        folds = min(cv_folds, int(y.value_counts().min()))
        if folds < 2:
            break  # too few rows of a class to cross-validate: keep the ranking so far
        if halving:
            clock.say(f"rung {rung}/{len(sizes)}: {len(alive)} candidates on {size:,} rows")
        splits = _validation_splits(y, folds, seed, single=halving)
        _score_rung(
            alive, x, y, splits, scoring, seed, n_classes, rung, metric, clock, others.fit_cores
        )
        alive.sort(key=_rank, reverse=True)
        if rung < len(sizes):
            alive = alive[: max(1, math.ceil(len(alive) / factor))]
    # Refit on at least twice the rows the finalists were compared on (the race's top rung).
    best = choose(alive, beyond_sample=halving and rows >= BEYOND_SAMPLE * sizes[-1])
    # Fit time grows about linearly with rows: extrapolate from the candidate's last rung.
    expected = best.fit_seconds_at_most(rows)
    estimate = f" (at most ~{expected:.0f} s, scaled up from the sample)" if expected >= 1 else ""
    threads = fit_limit(best.family, rows, others.fit_cores)
    cores = (
        f" on {threads} core{'s' if threads > 1 else ''}: the rest of the machine was busy"
        if threads is not None and long_fit(best.family, rows)
        else ""
    )
    clock.say(f"refitting the best, {best.label}, on all {rows:,} training rows{cores}{estimate}")
    started = time.monotonic()
    with beside_refit(threads == 1):
        watch = BoostingProgress()
        with clock.heartbeat(
            f"refitting on {rows:,} rows", expected, every=HEARTBEAT_SECONDS, watch=watch
        ):
            model = _refit(
                split, train_y, best, seed, n_classes, keep_training_rows, threads, watch
            )
        # Timed before leaving: what runs beside the refit may outlast it, and is not its cost.
        refit_seconds = time.monotonic() - started
    holdout = score(model, split.test_x, split.test_y)
    clock.say(f"refit done in {refit_seconds:.0f} s; holdout {metric}={holdout[metric]:.4f}")
    return SweepResult(
        model=model,
        best=best,
        candidates=candidates,
        holdout_metrics=holdout,
        # The prior ignores the features: the labels stand in for them.
        baseline_metrics=baseline_score(train_y.to_frame(), train_y, split.test_x, split.test_y),
        split=split,
        metric=metric,
        classes=[str(c) for c in model.classes_],
        search=search,
        refit_seconds=refit_seconds,
    )


__all__ = [
    "RANDOM_FOREST",
    "Candidate",
    "Split",
    "SweepResult",
    "grid",
    "holdout_for",
    "races",
    "run_sweep",
    "rung_sizes",
    "split_holdout",
    "stratified_sample",
]
