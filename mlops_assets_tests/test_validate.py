"""Validation reports: row failures quarantined with reasons, dataset failures all at once."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlops_assets.quality.schema import DatasetSchema, demo_schema, infer_schema
from mlops_assets.quality.validate import QualityThresholds, validate
from mlops_assets.sources import SOURCE_FILE, SOURCE_ROW, read_demo


@pytest.fixture(scope="module")
def schema() -> DatasetSchema:
    return demo_schema()


@pytest.fixture
def demo() -> pd.DataFrame:
    return read_demo().frame.copy()


def _rules(report) -> set[tuple[str, str]]:  # type: ignore[no-untyped-def]
    return {(f.column or "", f.rule) for f in report.failures}


def test_demo_data_passes(schema: DatasetSchema, demo: pd.DataFrame) -> None:
    report = validate(demo, schema)
    assert report.passed and report.reconciles
    assert (report.rows_in, report.rows_valid, report.rows_quarantined) == (569, 569, 0)
    assert list(report.valid.columns[-2:]) == [SOURCE_FILE, SOURCE_ROW]


def test_row_failures_keep_the_row_and_its_reason(
    schema: DatasetSchema, demo: pd.DataFrame
) -> None:
    demo.loc[0, "mean radius"] = np.inf
    demo.loc[1, "mean radius"] = -np.inf
    demo.loc[2, "mean area"] = np.nan
    demo.loc[3, "target"] = 3
    report = validate(demo, schema)
    assert report.passed, report.describe_failures()
    assert report.rows_quarantined == 4 and report.rows_valid == 565 and report.reconciles
    q = report.quarantined
    assert set(zip(q["quarantine_column"], q["quarantine_rule"], strict=True)) == {
        ("mean radius", "finite"),
        ("mean radius", "greater_than_or_equal_to(0)"),  # -inf breaks the floor too
        ("mean radius", "less_than_or_equal_to(281.0)"),  # and +inf the ceiling
        ("mean area", "not_nullable"),
        ("target", "isin([0, 1])"),
    }
    # The refused row is kept whole, as text, with the line it came from.
    row = q[q["quarantine_rule"] == "isin([0, 1])"].iloc[0]
    assert row["target"] == "3" and row[SOURCE_ROW] == 5


def test_text_in_a_numeric_column(schema: DatasetSchema, demo: pd.DataFrame) -> None:
    demo["mean texture"] = demo["mean texture"].astype(object)
    demo.loc[7, "mean texture"] = "abc"
    report = validate(demo, schema)
    assert report.passed
    q = report.quarantined
    assert q[["quarantine_column", "quarantine_rule"]].values.tolist() == [
        ["mean texture", "dtype"]
    ]
    assert "'abc' is not a number" in q["quarantine_value"].iloc[0]


def test_a_column_that_changed_type_fails_the_dataset(
    schema: DatasetSchema, demo: pd.DataFrame
) -> None:
    demo["mean texture"] = "n/a-" + demo["mean texture"].astype(str)
    report = validate(demo, schema)
    assert not report.passed
    assert ("mean texture", "dtype") in _rules(report)
    assert "changed type" in report.describe_failures()


def test_structure_failures_are_listed_together(schema: DatasetSchema, demo: pd.DataFrame) -> None:
    broken = demo.drop(columns=["mean radius", "target"]).rename(columns={"mean area": "area_mean"})
    broken.attrs = {}
    report = validate(broken, schema)
    assert not report.passed and report.valid.empty
    assert {
        ("mean radius", "column_in_dataframe"),
        ("target", "column_in_dataframe"),
        ("mean area", "column_in_dataframe"),
        ("area_mean", "column_in_schema"),
    } <= _rules(report)
    assert all(f.file == "sklearn:load_breast_cancer" for f in report.failures)


def test_each_file_is_checked_against_its_own_columns(
    schema: DatasetSchema, demo: pd.DataFrame
) -> None:
    first = demo.iloc[:300].assign(**{SOURCE_FILE: "a.csv"})
    second = demo.iloc[300:].drop(columns=["worst area"]).assign(**{SOURCE_FILE: "b.csv"})
    combined = pd.concat([first, second], ignore_index=True)
    combined.attrs["source_columns"] = {
        "a.csv": [c for c in demo.columns if not c.startswith("_")],
        "b.csv": [c for c in second.columns if not c.startswith("_")],
    }
    report = validate(combined, schema)
    assert [(f.file, f.column, f.rule) for f in report.failures] == [
        ("b.csv", "worst area", "column_in_dataframe")
    ]


def test_mostly_bad_file_is_refused_whole(schema: DatasetSchema, demo: pd.DataFrame) -> None:
    demo.loc[: int(len(demo) * 0.6), "mean area"] = np.nan
    report = validate(demo, schema)
    assert ("", "max_quarantine_share") in _rules(report)
    assert "most often column 'mean area'" in report.describe_failures()


@pytest.mark.parametrize(
    ("change", "rule"),
    [
        (lambda f: f[f["target"] == 1], "min_classes"),
        (lambda f: f.head(10), "min_rows"),
        (
            lambda f: pd.concat([f[f["target"] == 1], f[f["target"] == 0].head(3)]),
            "min_class_share",
        ),
    ],
)
def test_dataset_rules(schema: DatasetSchema, demo: pd.DataFrame, change, rule: str) -> None:  # type: ignore[no-untyped-def]
    report = validate(change(demo), schema)
    assert rule in {f.rule for f in report.failures}
    assert report.valid.empty


def test_thresholds_are_configurable(schema: DatasetSchema, demo: pd.DataFrame) -> None:
    assert not validate(demo.head(20), schema).passed
    assert validate(demo.head(20), schema, QualityThresholds(min_rows=10)).passed


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=st.lists(
        st.one_of(
            st.floats(allow_nan=True, allow_infinity=True, width=64),
            st.sampled_from(["x", "", "1.5"]),
        ),
        min_size=1,
        max_size=60,
    ),
    labels=st.lists(st.sampled_from(["a", "b", "c", None]), min_size=60, max_size=60),
)
def test_rows_in_equal_rows_validated_plus_quarantined(values: list, labels: list) -> None:  # type: ignore[type-arg]
    frame = pd.DataFrame({"x": pd.Series(values, dtype=object), "label": labels[: len(values)]})
    template = pd.DataFrame({"x": [0.0, 1.0, 2.0], "label": ["a", "b", "c"]})
    dataset = infer_schema(template, "label", "prop")
    frame[SOURCE_FILE] = "p.csv"
    frame[SOURCE_ROW] = range(2, len(frame) + 2)
    report = validate(
        frame, dataset, QualityThresholds(min_rows=0, max_quarantine_share=1.0, min_class_share=0.0)
    )
    if report.passed:
        assert report.rows_valid + report.rows_quarantined == len(frame)
        valid_rows = set(report.valid[SOURCE_ROW])
        quarantined_rows = set(report.quarantined[SOURCE_ROW].astype(int))
        assert not valid_rows & quarantined_rows
        assert np.isfinite(report.valid["x"].astype(float)).all()
    else:
        # A dataset failure is reported with the rule that refused it, and keeps no rows.
        assert report.valid.empty and report.failures


def test_a_file_of_another_dataset_says_so_first(schema: DatasetSchema) -> None:
    other = pd.DataFrame(
        {"length_cm": [1.0, 2.0] * 20, "colour": ["red", "blue"] * 20, "target": [0, 1] * 20}
    )
    other[SOURCE_FILE] = pd.Categorical(["fruit.csv"] * len(other))
    other[SOURCE_ROW] = range(2, len(other) + 2)
    report = validate(other, schema)
    assert not report.passed
    first, *rest = report.failures
    assert (first.file, first.rule) == ("fruit.csv", "other_dataset")
    assert "has 1 of the schema's 31 columns" in first.message
    # The rest by column, so a long list reads like the schema.
    columns = [f.column or "" for f in rest]
    assert columns == sorted(columns)


def test_a_few_missing_columns_are_not_another_dataset(
    schema: DatasetSchema, demo: pd.DataFrame
) -> None:
    report = validate(demo.drop(columns=["mean radius", "worst area"]), schema)
    assert {f.rule for f in report.failures} == {"column_in_dataframe"}
