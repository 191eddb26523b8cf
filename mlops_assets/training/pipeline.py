"""The model: imputation and one-hot encoding as the columns need, then a random forest."""

import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from mlops_assets.training.trusted import SKOPS_TRUSTED_TYPES

__all__ = ["SKOPS_TRUSTED_TYPES", "build_pipeline", "split_columns"]


def split_columns(features: pd.DataFrame) -> tuple[list[str], list[str]]:
    numeric = [
        str(c)
        for c in features.columns
        if pd.api.types.is_numeric_dtype(features[c])
        and not pd.api.types.is_bool_dtype(features[c])
    ]
    categorical = [str(c) for c in features.columns if str(c) not in numeric]
    return numeric, categorical


def build_pipeline(features: pd.DataFrame, n_estimators: int, seed: int) -> Pipeline:
    numeric, categorical = split_columns(features)
    transformers = []
    if numeric:
        transformers.append(("numeric", SimpleImputer(strategy="median"), numeric))
    if categorical:
        transformers.append(
            (
                "categorical",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="most_frequent")),
                        (
                            "encode",
                            OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                        ),
                    ]
                ),
                categorical,
            )
        )
    return Pipeline(
        [
            ("prepare", ColumnTransformer(transformers, remainder="drop")),
            (
                "model",
                RandomForestClassifier(n_estimators=n_estimators, random_state=seed, n_jobs=-1),
            ),
        ]
    )
