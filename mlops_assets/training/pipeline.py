"""The model families, each with the preparation that suits it.

- random_forest: median / most-frequent imputation and one-hot encoding, then a forest whose
  size is bounded (leaves per tree from a byte budget, rows per tree capped) so a registered
  version stays small whatever the row count;
- hist_gradient_boosting: nulls go to the model as they are (it learns where they belong) and
  text columns are ordinal codes it splits on as categories.
"""

import functools
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder
from threadpoolctl import ThreadpoolController

from mlops_assets.training.trusted import SKOPS_TRUSTED_TYPES

__all__ = [
    "FAMILIES",
    "SKOPS_TRUSTED_TYPES",
    "build_pipeline",
    "fit_limit",
    "fit_threads",
    "forest_bounds",
    "long_fit",
    "openmp_threads",
    "split_columns",
    "threads_for",
    "tree_nodes",
]

RANDOM_FOREST = "random_forest"
HIST_GRADIENT_BOOSTING = "hist_gradient_boosting"
FAMILIES = (RANDOM_FOREST, HIST_GRADIENT_BOOSTING)

# A forest's artifact stays under this whatever the row count (the bound is 50 MB).
FOREST_BYTES_BUDGET = 40_000_000
TREE_OVERHEAD_BYTES = 20_000
# Rows each tree sees at most: beyond this a forest gains little and costs linearly.
FOREST_MAX_ROWS_PER_TREE = 100_000
# HistGradientBoosting bins a categorical column into at most 255 categories; a text column
# with more is given to it as ordinal codes instead.
MAX_NATIVE_CATEGORIES = 250
EARLY_STOPPING_ROWS = 2_000
# Below this many rows models run on one thread (boosting fits have their own threshold,
# below). A forest's trees are then cheaper than joblib's hand-off (measured on 2 cores: fit
# even at 300 rows, predict 2-3x faster), and boosting's OpenMP regions are shorter than their
# barrier, which waits for the scheduler when the other core is busy (the daemon, the
# webserver): the demo's cross-validation took 2.4-6.5 s on two threads against 1.5-1.9 s on
# one while another process kept a core busy.
THREADED_ROWS = 1_000
# Boosting fits on fewer rows than this (a race's rungs) run OpenMP on one thread too. Boosting
# grows a tree a node at a time, each node a few short parallel regions whose threads wait for
# each other at the end; on this few rows a second thread gains nothing even with every core
# free (the 255-leaf model on 2 cores: 0.57 s against 0.45 s on 4,444 rows, 1.36 s against
# 1.29 s on 13,333) and loses badly whenever anything else wants a core (1.83 s against 0.39 s
# and 4.61 s against 1.51 s beside one busy process). From here a second core pays (72,000
# rows: 3.2 s against 4.1 s), so longer fits take the cores the rest of the machine leaves free
# (mlops_assets.training.cores). A race counts the rows it fits; a refit, all training rows.
BOOSTING_THREADED_ROWS = 50_000

Cores = Callable[[], int | None]


def _as_configured() -> int | None:
    return None


@functools.cache
def _thread_pools() -> ThreadpoolController:
    # Finding the loaded thread pools walks every shared library in the process: once, not at
    # every fold (20 ms each time).
    return ThreadpoolController()


@contextmanager
def openmp_threads(limit: int | None) -> Iterator[None]:
    """OpenMP (boosting) on at most `limit` threads in the block; None leaves it as configured
    (a lower OMP_NUM_THREADS is never raised)."""
    if limit is None:
        yield
        return
    pools = _thread_pools().select(user_api="openmp")
    if limit > 1:
        limit = min([limit, *(pool["num_threads"] for pool in pools.info())])
    with pools.limit(limits=limit):
        yield


def threads_for(rows: int, threaded_from: int = THREADED_ROWS) -> AbstractContextManager[None]:
    """OpenMP on one thread while fitting or predicting fewer than `threaded_from` rows; as
    configured otherwise."""
    return openmp_threads(1 if rows < threaded_from else None)


def long_fit(family: str, rows: int) -> bool:
    """A fit whose threads depend on what the rest of the machine leaves free."""
    return family == HIST_GRADIENT_BOOSTING and rows >= BOOSTING_THREADED_ROWS


def fit_limit(family: str, rows: int, free_cores: Cores = _as_configured) -> int | None:
    """OpenMP threads for fitting a model of `family` on `rows` rows and scoring it after: one
    for small fits, `free_cores()` for a long one, None for as configured."""
    if long_fit(family, rows):
        return free_cores()
    if family != HIST_GRADIENT_BOOSTING:
        return 1 if rows < THREADED_ROWS else None
    return 1


def fit_threads(
    family: str, rows: int, free_cores: Cores = _as_configured
) -> AbstractContextManager[None]:
    return openmp_threads(fit_limit(family, rows, free_cores))


def split_columns(features: pd.DataFrame) -> tuple[list[str], list[str]]:
    numeric = [
        str(c)
        for c in features.columns
        if pd.api.types.is_numeric_dtype(features[c])
        and not pd.api.types.is_bool_dtype(features[c])
    ]
    categorical = [str(c) for c in features.columns if str(c) not in numeric]
    return numeric, categorical


def forest_bounds(rows: int, n_estimators: int, n_classes: int) -> dict[str, Any]:
    """Leaves per tree from the byte budget, rows per tree capped. Measured in skops files: a
    tree costs ~20 kB of its own plus ~80 bytes a node and 8 a class per node, and a tree of L
    leaves has 2L - 1 nodes. Small data never reaches either bound: a tree has fewer leaves
    than rows."""
    node_bytes = 80 + 8 * max(n_classes, 2)
    per_tree = FOREST_BYTES_BUDGET // max(n_estimators, 1) - TREE_OVERHEAD_BYTES
    bounds: dict[str, Any] = {"max_leaf_nodes": int(max(2, per_tree // (2 * node_bytes)))}
    if rows > FOREST_MAX_ROWS_PER_TREE:
        bounds["max_samples"] = FOREST_MAX_ROWS_PER_TREE
    return bounds


def _forest(
    features: pd.DataFrame, params: dict[str, Any], seed: int, rows: int, n_classes: int
) -> Pipeline:
    numeric, categorical = split_columns(features)
    transformers: list[tuple[str, Any, list[str]]] = []
    if numeric:
        transformers.append(("numeric", SimpleImputer(strategy="median"), numeric))
    if categorical:
        encode = Pipeline(
            [
                ("impute", SimpleImputer(strategy="most_frequent")),
                ("encode", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
            ]
        )
        transformers.append(("categorical", encode, categorical))
    n_estimators = int(params.get("n_estimators", 100))
    model = RandomForestClassifier(
        n_estimators=n_estimators,
        random_state=seed,
        n_jobs=-1 if rows >= THREADED_ROWS else 1,
        **forest_bounds(rows, n_estimators, n_classes),
    )
    return Pipeline(
        [("prepare", ColumnTransformer(transformers, remainder="drop")), ("model", model)]
    )


def _boosting(features: pd.DataFrame, params: dict[str, Any], seed: int) -> Pipeline:
    _, categorical = split_columns(features)
    native = [c for c in categorical if features[c].nunique(dropna=True) <= MAX_NATIVE_CATEGORIES]
    coded = [c for c in categorical if c not in native]
    model = HistGradientBoostingClassifier(
        learning_rate=float(params.get("learning_rate", 0.1)),
        max_leaf_nodes=int(params.get("max_leaf_nodes", 31)),
        min_samples_leaf=int(params.get("min_samples_leaf", 20)),
        max_iter=int(params.get("max_iter", 200)),
        # scikit-learn turns it on only above 10,000 rows; from a few thousand the held-out 10%
        # is enough to stop on, and without it a small-sample candidate runs all iterations.
        early_stopping=len(features) >= EARLY_STOPPING_ROWS,
        categorical_features=native or None,
        random_state=seed,
    )
    if not coded:
        # The model takes the frame as it is: text columns are its native categories (it
        # encodes them itself, unknown values as missing), nulls go where it learned to send
        # them. No preparation step, so no copy of the training rows before its own.
        return Pipeline([("model", model)])
    # Too many distinct values to be categories: ordinal codes, split on as numbers.
    encode = OrdinalEncoder(
        handle_unknown="use_encoded_value",
        unknown_value=np.nan,
        encoded_missing_value=np.nan,
        dtype=np.float64,
    )
    prepare = ColumnTransformer(
        [("coded", encode, coded)], remainder="passthrough", verbose_feature_names_out=False
    ).set_output(transform="pandas")
    return Pipeline([("prepare", prepare), ("model", model)])


def tree_nodes(pipeline: Any) -> int:
    """Nodes in a fitted model's trees: what it costs to store and to run, counted the same
    way every time (unlike seconds)."""
    model = pipeline[-1] if isinstance(pipeline, Pipeline) else pipeline
    if hasattr(model, "estimators_"):
        return int(sum(tree.tree_.node_count for tree in model.estimators_))
    predictors = getattr(model, "_predictors", None)
    if predictors is not None:
        return int(sum(len(p.nodes) for step in predictors for p in step))
    return 0


def build_pipeline(
    features: pd.DataFrame,
    n_estimators: int | None = None,
    seed: int = 42,
    *,
    family: str = RANDOM_FOREST,
    params: dict[str, Any] | None = None,
    n_classes: int = 2,
) -> Pipeline:
    """`features` is the frame the pipeline will be fitted on: its dtypes choose the
    preparation, its length the forest's bounds."""
    params = dict(params or {})
    if n_estimators is not None:
        params["n_estimators"] = n_estimators
    if family == RANDOM_FOREST:
        return _forest(features, params, seed, len(features), n_classes)
    if family == HIST_GRADIENT_BOOSTING:
        return _boosting(features, params, seed)
    raise ValueError(f"unknown model family '{family}': choose from {', '.join(FAMILIES)}")
