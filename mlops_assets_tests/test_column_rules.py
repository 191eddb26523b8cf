"""Column rules evaluated outside Pandera must report exactly what Pandera alone reports."""

from unittest import mock

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlops_assets.quality import column_rules
from mlops_assets.quality.schema import DatasetSchema, demo_schema, with_platform_rules
from mlops_assets.quality.validate import QualityThresholds, ValidationReport, validate
from mlops_assets.sources import SOURCE_FILE, SOURCE_ROW, read_demo

KEEP_ROWS = QualityThresholds(min_rows=0, max_quarantine_share=1.0, min_class_share=0.0)
VALUES = [0.0, 1.0, 2.5, -1.0, 10.0, np.nan, np.inf, -np.inf]


def _pandera_only(frame: pd.DataFrame, dataset: DatasetSchema) -> ValidationReport:
    """Every column left to Pandera, as before column rules were evaluated directly."""
    with mock.patch.object(column_rules, "evaluable_columns", return_value=[]):
        return validate(frame, dataset, KEEP_ROWS)


def _assert_same(frame: pd.DataFrame, dataset: DatasetSchema) -> ValidationReport:
    fast = validate(frame, dataset, KEEP_ROWS)
    slow = _pandera_only(frame, dataset)
    pd.testing.assert_frame_equal(fast.valid, slow.valid)
    # Row order too: Pandera's failure-case table comes out of an unstable sort.
    pd.testing.assert_frame_equal(fast.quarantined, slow.quarantined)
    assert fast.failures == slow.failures
    return fast


def _float_checks() -> st.SearchStrategy[list[pa.Check]]:
    bound = st.sampled_from([0, 1, 2.5, -1.0])
    one = st.one_of(
        bound.map(pa.Check.ge),
        bound.map(pa.Check.gt),
        bound.map(pa.Check.le),
        bound.map(pa.Check.lt),
        bound.map(pa.Check.ne),
        st.tuples(bound, st.booleans(), st.booleans()).map(
            lambda t: pa.Check.in_range(t[0], t[0] + 5, include_min=t[1], include_max=t[2])
        ),
        st.just(pa.Check.isin([0.0, 1.0, 2.5])),
        st.just(pa.Check.notin([10.0])),
        # Not a builtin: the whole column stays with Pandera.
        st.just(pa.Check(lambda s: s < 9, name="below_nine")),
    )
    return st.lists(one, max_size=3)


@st.composite
def _cases(draw: st.DrawFn) -> tuple[pd.DataFrame, DatasetSchema]:
    rows = draw(st.integers(min_value=1, max_value=25))
    columns: dict[str, pa.Column] = {}
    data: dict[str, object] = {}
    for name in ("a", "b", "c"):
        columns[name] = pa.Column(float, checks=draw(_float_checks()), nullable=draw(st.booleans()))
        data[name] = draw(st.lists(st.sampled_from(VALUES), min_size=rows, max_size=rows))
    # An integer rule on data that arrives as floats: Pandera coerces that column, and its
    # failures must interleave with the ones evaluated here.
    columns["n"] = pa.Column(int, checks=[pa.Check.in_range(0, 3)], nullable=False)
    as_float = draw(st.booleans())
    ints = draw(st.lists(st.integers(min_value=-1, max_value=4), min_size=rows, max_size=rows))
    data["n"] = pd.Series(ints, dtype="float64" if as_float else "int64")
    if as_float and draw(st.booleans()):
        data["n"][0] = 0.5  # cannot become an int
    columns["label"] = pa.Column(int, checks=[pa.Check.isin([0, 1])], nullable=False)
    data["label"] = draw(st.lists(st.sampled_from([0, 1, 2]), min_size=rows, max_size=rows))
    schema = pa.DataFrameSchema(columns, strict=True, name="prop")
    frame = pd.DataFrame(data)
    if draw(st.booleans()):
        frame["a"] = frame["a"].astype(object)
        frame.loc[0, "a"] = "text"
    if draw(st.booleans()):
        frame = frame.drop(columns=["b"])
    if draw(st.booleans()):
        frame["extra"] = 1.0
    files = draw(st.sampled_from([1, 2]))
    frame[SOURCE_FILE] = [f"f{i % files}.csv" for i in range(rows)]
    frame[SOURCE_ROW] = range(2, rows + 2)
    return frame, DatasetSchema("prop", with_platform_rules(schema), "label")


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=_cases())
def test_same_report_as_pandera_alone(case: tuple[pd.DataFrame, DatasetSchema]) -> None:
    frame, dataset = case
    _assert_same(frame, dataset)


def test_demo_with_bad_values_matches_pandera() -> None:
    frame = read_demo().frame.copy()
    frame.loc[0, "mean radius"] = np.inf
    frame.loc[1, "mean radius"] = -np.inf
    frame.loc[2, "mean area"] = np.nan
    frame.loc[3, "target"] = 3
    frame.loc[4, "worst area"] = 1e9
    report = _assert_same(frame, demo_schema())
    assert report.rows_quarantined == 5


def test_the_demo_columns_are_evaluated_here() -> None:
    dataset = demo_schema()
    frame = read_demo().frame
    validate(frame, dataset)  # Pandera loads its backends on a first validation
    assert column_rules.evaluable_columns(dataset.validation_schema, frame) == list(
        dataset.schema.columns
    )


@pytest.mark.parametrize(
    "check",
    [
        pa.Check(lambda s: s > 0, name="greater_than", statistics={"min_value": 0}),
        pa.Check.ge(0, raise_warning=True),
        pa.Check.ge(0, n_failure_cases=3),
        pa.Check.ge(0, error="custom message"),
        pa.Check.ge("a"),
        pa.Check.isin(["x", "y"]),
        pa.Check.str_length(1, 3),
    ],
)
def test_other_checks_stay_with_pandera(check: pa.Check) -> None:
    schema = pa.DataFrameSchema({"x": pa.Column(float, checks=[check])})
    assert column_rules.evaluable_columns(schema, pd.DataFrame({"x": [1.0]})) == []


def test_a_column_to_coerce_stays_with_pandera() -> None:
    schema = pa.DataFrameSchema({"x": pa.Column(int, checks=[pa.Check.ge(0)])})
    assert column_rules.evaluable_columns(schema, pd.DataFrame({"x": [1.0]})) == []
