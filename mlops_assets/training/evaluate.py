"""Scoring a classifier on a holdout the same way for challenger, champion and baseline."""

import hashlib
from typing import Any

import numpy as np
import pandas as pd
from sklearn.dummy import DummyClassifier
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    roc_auc_score,
)

from mlops_assets.training.pipeline import threads_for

METRICS = ("accuracy", "balanced_accuracy", "f1_macro", "roc_auc")


def score(model: Any, features: pd.DataFrame, labels: pd.Series) -> dict[str, float]:
    return predict_and_score(model, features, labels)[1]


def predict_and_score(
    model: Any, features: pd.DataFrame, labels: pd.Series
) -> tuple[np.ndarray, dict[str, float]]:
    predicted, result, _ = predict_proba_and_score(model, features, labels)
    return predicted, result


def predict_proba_and_score(
    model: Any, features: pd.DataFrame, labels: pd.Series
) -> tuple[np.ndarray, dict[str, float], np.ndarray | None]:
    """The model's predictions, their metrics and the class probabilities (None for a model
    without them) from one pass over the rows: a classifier with probabilities predicts the
    most probable class (what `predict` does for the forest and the boosted trees), so scoring
    a million rows does not run the model twice."""
    classes = np.asarray(getattr(model, "classes_", []))
    proba = None
    with threads_for(len(features)):
        if hasattr(model, "predict_proba") and len(classes):
            proba = np.asarray(model.predict_proba(features))
            predicted = classes[proba.argmax(axis=1)]
        else:
            predicted = np.asarray(model.predict(features))
    result = {
        "accuracy": float(accuracy_score(labels, predicted)),
        "balanced_accuracy": float(balanced_accuracy_score(labels, predicted)),
        "f1_macro": float(f1_score(labels, predicted, average="macro")),
    }
    if proba is not None and set(labels.unique()) <= set(classes.tolist()):
        if len(classes) == 2:
            result["roc_auc"] = float(roc_auc_score(labels == classes[1], proba[:, 1]))
        elif labels.nunique() == len(classes):
            result["roc_auc"] = float(
                roc_auc_score(labels, proba, multi_class="ovr", labels=list(classes))
            )
    return predicted, result, proba


def baseline_score(
    train_x: pd.DataFrame, train_y: pd.Series, test_x: pd.DataFrame, test_y: pd.Series
) -> dict[str, float]:
    """What predicting the class prior scores: a model has to beat this to be worth anything."""
    dummy = DummyClassifier(strategy="prior").fit(train_x, train_y)
    return score(dummy, test_x, test_y)


def frame_fingerprint(frame: pd.DataFrame, columns: list[str] | None = None) -> str:
    """A hash of the values (and index) of `columns` of `frame`, all columns by default;
    selected copy-on-write, so hashing a million-row frame does not copy it first."""
    with pd.option_context("mode.copy_on_write", True):
        selected = frame if columns is None else frame[columns]
        hashed = pd.util.hash_pandas_object(selected, index=True).to_numpy()
    return hashlib.sha256(np.ascontiguousarray(hashed).tobytes()).hexdigest()[:16]


HOLDOUT_PREDICTIONS = "holdout_predictions.parquet"


def holdout_table(
    labels: pd.Series, predicted: np.ndarray, probabilities: np.ndarray | None
) -> pd.DataFrame:
    """One row per holdout row, in the holdout's order: the label, the prediction and (for a
    model with probabilities) one `proba_i` column per class in the model's class order.
    Probabilities are stored as float32: a plot's resolution, half the bytes at scale."""
    table = pd.DataFrame({"label": np.asarray(labels), "predicted": np.asarray(predicted)})
    if probabilities is not None:
        for i in range(probabilities.shape[1]):
            table[f"proba_{i}"] = probabilities[:, i].astype(np.float32)
    return table


def from_holdout_table(table: pd.DataFrame) -> tuple[pd.Series, np.ndarray, np.ndarray | None]:
    """The labels, predictions and probabilities (None if the table has none) of
    `holdout_table`."""
    proba_columns = sorted(
        (c for c in table.columns if str(c).startswith("proba_")), key=lambda c: int(c[6:])
    )
    probabilities = table[proba_columns].to_numpy(np.float64) if proba_columns else None
    return table["label"], table["predicted"].to_numpy(), probabilities
