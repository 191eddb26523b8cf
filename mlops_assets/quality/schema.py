"""The dataset schema: a Pandera schema plus the name of the label column.

The demo data has a built-in schema; a user's data gets one from `MLOPS_SCHEMA` (YAML written by
`mlops-assets schema infer`). Every numeric column also refuses +/-inf (the
registered `finite` check) whatever the YAML says.
"""

import hashlib
import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pa
import yaml
from pandera import extensions

FINITE = "finite"
RANGE_MARGIN = 0.1
MAX_CATEGORIES = 50


@dataclass(frozen=True)
class DatasetSchema:
    name: str
    schema: pa.DataFrameSchema
    target: str

    @property
    def features(self) -> list[str]:
        return [c for c in self.schema.columns if c != self.target]

    @cached_property
    def validation_schema(self) -> pa.DataFrameSchema:
        """The schema plus the lineage columns raw_dataset adds, so one pass checks all."""
        from mlops_assets.sources import LINEAGE_COLUMNS

        lineage = {name: pa.Column(None, nullable=True, required=False) for name in LINEAGE_COLUMNS}
        return self.schema.add_columns(lineage)

    @cached_property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.to_yaml().encode()).hexdigest()[:16]

    def to_yaml(self) -> str:
        # Pandera reads `metadata` from YAML but does not write it; the target lives there.
        document = yaml.safe_load(str(self.schema.to_yaml()))
        document["metadata"] = {**(self.schema.metadata or {}), "target": self.target}
        return str(yaml.safe_dump(document, sort_keys=False))

    def numeric_columns(self) -> list[str]:
        return [c for c, col in self.schema.columns.items() if _is_numeric(col)]


def _is_numeric(column: pa.Column) -> bool:
    dtype = column.dtype
    if dtype is None:
        return False
    try:
        return bool(pd.api.types.is_numeric_dtype(np.dtype(str(dtype))))
    except TypeError:
        return str(dtype) in {"Int64", "Int32", "Float64", "Float32"}


def finite_or_null(series: pd.Series) -> np.ndarray:
    """The `finite` check's verdict per value: a null passes (nullability is its own rule)."""
    if isinstance(series.dtype, np.dtype) and series.dtype.kind == "f":
        # Neither a copy with nulls filled in nor an isnan pass: NaN is not infinite.
        return ~np.isinf(series.to_numpy())
    values = series.to_numpy(dtype="float64", na_value=np.nan)
    return np.isfinite(values) | np.isnan(values)


def _register_finite() -> None:
    # Registered (not a lambda) so schemas holding it serialise to YAML and hash stably.
    if hasattr(pa.Check, FINITE):
        return

    @extensions.register_check_method(statistics=[])
    def finite(series: pd.Series) -> pd.Series:
        return pd.Series(finite_or_null(series), index=series.index)


_register_finite()


def _finite_check() -> pa.Check:
    return pa.Check.finite()


def with_platform_rules(schema: pa.DataFrameSchema) -> pa.DataFrameSchema:
    """Coerce dtypes, and make every numeric column refuse infinities."""
    columns = {}
    for name, column in schema.columns.items():
        checks = list(column.checks)
        if _is_numeric(column) and not any(c.name == FINITE for c in checks):
            checks.append(_finite_check())
        if not column.nullable:
            # Nulls are already refused by not_nullable; skipping Pandera's per-check dropna
            # (a copy of the column for every check) is a third of the validation time.
            for check in checks:
                check.ignore_na = False
        columns[name] = column.set_checks(checks)
    return pa.DataFrameSchema(
        columns,
        checks=schema.checks,
        coerce=True,
        strict=schema.strict if schema.strict is not None else True,
        name=schema.name,
        metadata=schema.metadata,
    )


def demo_schema() -> DatasetSchema:
    """The breast cancer Wisconsin data: 30 non-negative measurements and a 0/1 diagnosis.
    A measurement ten times the largest ever recorded is an entry error, not a tumour."""
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    ceilings = bunch.data.max(axis=0) * 10
    columns = {
        str(name): pa.Column(
            float,
            checks=[pa.Check.ge(0), pa.Check.le(float(f"{ceiling:.3g}"))],
            nullable=False,
            title=str(name),
        )
        for name, ceiling in zip(bunch.feature_names, ceilings, strict=True)
    }
    columns["target"] = pa.Column(
        int,
        checks=[pa.Check.isin([0, 1])],
        nullable=False,
        description="0 = malignant, 1 = benign",
    )
    schema = pa.DataFrameSchema(
        columns, strict=True, name="breast_cancer", metadata={"target": "target"}
    )
    return DatasetSchema("breast_cancer", with_platform_rules(schema), "target")


def load_schema(path: Path, target: str | None = None) -> DatasetSchema:
    """A user's YAML schema; the target comes from its metadata, else from `target`."""
    if not path.is_file():
        raise FileNotFoundError(f"MLOPS_SCHEMA points at {path}, which does not exist")
    schema = pa.DataFrameSchema.from_yaml(path.read_text())
    recorded = (schema.metadata or {}).get("target")
    chosen = recorded or target
    if not chosen:
        raise ValueError(f"{path.name}: no target column: set metadata.target or MLOPS_TARGET")
    if chosen not in schema.columns:
        raise ValueError(f"{path.name}: target column '{chosen}' is not among the schema's columns")
    return DatasetSchema(schema.name or path.stem, with_platform_rules(schema), chosen)


def _round_out(value: float, up: bool, whole: bool) -> float | int:
    """A bound a person reads and edits: whole numbers for an integer column, else three
    significant digits, rounded away from the data so the range only widens."""
    step = math.ceil if up else math.floor
    if whole:
        return int(step(value))
    if value == 0 or not math.isfinite(value):
        return value
    scale = 10.0 ** (math.floor(math.log10(abs(value))) - 2)
    return float(f"{step(value / scale) * scale:.3g}")


def infer_schema(frame: pd.DataFrame, target: str, name: str) -> DatasetSchema:
    """Pandera's inference, tightened: nullability from the data, ranges with a margin,
    categories for text columns with few distinct values."""
    if target not in frame.columns:
        raise ValueError(f"target column '{target}' is not in the data: {list(frame.columns)}")
    inferred = pa.infer_schema(frame)
    columns = {}
    for col_name, column in inferred.columns.items():
        series = frame[col_name]
        checks: list[pa.Check] = []
        if col_name == target:
            # A label outside the classes seen at inference is a new class: refuse it loudly.
            checks.append(pa.Check.isin(sorted(series.dropna().unique().tolist())))
        elif pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
            finite = series[np.isfinite(series.astype("float64"))]
            if len(finite):
                low, high = float(finite.min()), float(finite.max())
                margin = (high - low) * RANGE_MARGIN or abs(high) * RANGE_MARGIN or 1.0
                lower = low - margin
                if low >= 0 and lower < 0:
                    lower = 0.0  # a quantity that was never negative stays non-negative
                whole = pd.api.types.is_integer_dtype(series)
                checks.append(
                    pa.Check.in_range(
                        _round_out(lower, up=False, whole=whole),
                        _round_out(high + margin, up=True, whole=whole),
                    )
                )
        elif series.dtype == object or isinstance(series.dtype, pd.StringDtype):
            values = series.dropna().astype(str).unique().tolist()
            if len(values) <= MAX_CATEGORIES:
                checks.append(pa.Check.isin(sorted(values)))
        nullable = bool(series.isna().any()) and col_name != target
        dtype = column.dtype
        if pd.api.types.is_integer_dtype(series) and nullable:
            dtype = "Int64"
        columns[col_name] = pa.Column(dtype, checks=checks, nullable=nullable)
    schema = pa.DataFrameSchema(columns, strict=True, name=name, metadata={"target": target})
    return DatasetSchema(name, schema, target)
