"""A battery of bad inputs against a project that already has good data and a champion.

Each case asserts the outcome (file quarantined, rows quarantined, asset failed, or passed), the
message (file, column, rule), and that nothing was lost: the previous validated data and the
champion are unchanged after a refusal, and the input file still exists under the landing or
quarantine folder."""

import io
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer

from mlops_assets.partitions import landed_files

from .conftest import Project, failure_messages, new_project

DEMO = load_breast_cancer(as_frame=True).frame


def csv(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


def edited(change: Callable[[pd.DataFrame], pd.DataFrame | None]) -> bytes:
    frame = DEMO.copy()
    result = change(frame)
    return csv(frame if result is None else result)


def _set(frame: pd.DataFrame, rows: object, column: str, value: object) -> None:
    if not pd.api.types.is_object_dtype(frame[column]) and isinstance(value, str):
        frame[column] = frame[column].astype(object)
    frame.loc[rows, column] = value


def _replace_text(old: str, new: str, count: int = 1) -> bytes:
    return DEMO.to_csv(index=False).replace(old, new, count).encode()


def _mixed_line_endings_with_quoted_newline() -> bytes:
    lines = DEMO.to_csv(index=False).splitlines()
    first = lines[1].split(",")
    first[0] = f'"{first[0]}\n"'  # a quoted field that spans two lines
    lines[1] = ",".join(first)
    return ("\r\n".join(lines[:300]) + "\n" + "\n".join(lines[300:]) + "\r\n").encode()


def _parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def _sixty_percent_bad(frame: pd.DataFrame) -> None:
    frame.loc[: int(len(frame) * 0.6), "mean smoothness"] = np.nan


def _conflicting(frame: pd.DataFrame) -> pd.DataFrame:
    copy = frame.head(10).copy()
    copy["target"] = 1 - copy["target"]
    return pd.concat([frame, copy], ignore_index=True)


@dataclass(frozen=True)
class Case:
    name: str
    filename: str
    payload: bytes
    outcome: str  # "file", "rows", "failed" or "pass"
    expect: tuple[str, ...]  # words the message (or the quarantine reasons) must contain


CASES = [
    Case("zero_bytes", "empty.csv", b"", "file", ("empty.csv", "empty (0 bytes)")),
    Case("header_only", "header.csv", csv(DEMO.head(0)), "file", ("header.csv", "header only")),
    Case("whitespace", "blank.csv", b"  \n\n", "file", ("blank.csv", "no header row")),
    Case(
        "ragged_row",
        "ragged.csv",
        _replace_text("\n", "\n1,2,3,", 1),
        "file",
        ("ragged.csv", "malformed CSV"),
    ),
    Case(
        "latin1",
        "latin1.csv",
        _replace_text("mean radius", "mean radïus").decode().encode("latin-1"),
        "file",
        ("latin1.csv", "not valid UTF-8", "0xef"),
    ),
    Case(
        "utf16", "utf16.csv", csv(DEMO).decode().encode("utf-16"), "file", ("utf16.csv", "UTF-16")
    ),
    Case(
        "binary_named_csv",
        "image.csv",
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)),
        "file",
        ("image.csv", "binary"),
    ),
    Case(
        "corrupt_parquet",
        "broken.parquet",
        _parquet(DEMO)[:-100],
        "file",
        ("broken.parquet", "not a readable Parquet file"),
    ),
    Case(
        "missing_column",
        "missing.csv",
        edited(lambda f: f.drop(columns=["mean symmetry"])),
        "failed",
        ("missing.csv", "column 'mean symmetry'", "column_in_dataframe"),
    ),
    Case(
        "extra_column",
        "extra.csv",
        edited(lambda f: f.assign(patient_id=range(len(f)))),
        "failed",
        ("extra.csv", "column 'patient_id'", "column_in_schema"),
    ),
    Case(
        "renamed_column",
        "renamed.csv",
        edited(lambda f: f.rename(columns={"worst area": "worst_area"})),
        "failed",
        ("renamed.csv", "column 'worst area'", "column_in_dataframe", "'worst_area': renamed?"),
    ),
    Case(
        "target_missing",
        "nolabel.csv",
        edited(lambda f: f.drop(columns=["target"])),
        "failed",
        ("nolabel.csv", "column 'target'", "column_in_dataframe"),
    ),
    Case(
        "numeric_full_of_na",
        "na.csv",
        edited(lambda f: f.assign(**{"mean texture": "N/A"})),
        "failed",
        ("na.csv", "max_quarantine_share", "column 'mean texture'", "not_nullable"),
    ),
    Case(
        "all_nan_column",
        "nan.csv",
        edited(lambda f: f.assign(**{"mean perimeter": np.nan})),
        "failed",
        ("nan.csv", "max_quarantine_share", "column 'mean perimeter'", "not_nullable"),
    ),
    Case(
        "float_column_as_strings",
        "strings.csv",
        edited(lambda f: f.assign(**{"mean area": "approx " + f["mean area"].astype(str)})),
        "failed",
        ("strings.csv", "column 'mean area'", "dtype", "changed type"),
    ),
    Case(
        "sixty_percent_bad",
        "mostlybad.csv",
        edited(_sixty_percent_bad),
        "failed",
        ("mostlybad.csv", "max_quarantine_share", "60%"),
    ),
    Case(
        "single_class",
        "benign.csv",
        csv(DEMO[DEMO["target"] == 1]),
        "failed",
        # Refused on its own partition: its mix against the champion's training data.
        ("benign.csv", "column 'target'", "label_mix", "100%"),
    ),
    Case(
        "rare_class",
        "rare.csv",
        csv(pd.concat([DEMO[DEMO["target"] == 1], DEMO[DEMO["target"] == 0].head(3)])),
        "failed",
        ("rare.csv", "column 'target'", "label_mix"),
    ),
    Case(
        "too_few_rows",
        "tiny.csv",
        csv(DEMO.head(12)),
        "failed",
        ("tiny.csv", "min_rows", "12 valid rows"),
    ),
    Case(
        "duplicated_rows",
        "twice.csv",
        csv(pd.concat([DEMO, DEMO.head(100)])),
        "failed",
        ("twice.csv", "max_duplicate_share", "100 rows"),
    ),
    Case(
        "conflicting_labels",
        "conflict.csv",
        edited(_conflicting),
        "failed",
        ("conflict.csv", "column 'target'", "conflicting_labels", "20 rows"),
    ),
    Case(
        "parquet_with_text_column",
        "typed.parquet",
        _parquet(DEMO.assign(**{"mean radius": "r=" + DEMO["mean radius"].astype(str)})),
        "failed",
        ("typed.parquet", "column 'mean radius'", "dtype"),
    ),
    Case(
        "plus_and_minus_inf",
        "inf.csv",
        edited(lambda f: (_set(f, 3, "mean radius", np.inf), _set(f, 4, "mean area", -np.inf))[0]),
        "rows",
        ("mean radius:finite", "mean area:finite"),
    ),
    Case(
        "1e308",
        "huge.csv",
        edited(lambda f: _set(f, 5, "mean area", 1e308)),
        "rows",
        ("mean area:less_than_or_equal_to(25000.0)",),
    ),
    Case(
        "huge_value_in_int_column",
        "bigint.csv",
        edited(lambda f: _set(f, 6, "target", "100000000000000000000")),
        "rows",
        ("target:",),
    ),
    Case(
        "empty_string_label",
        "nolabelvalue.csv",
        edited(lambda f: _set(f, 7, "target", "")),
        "rows",
        ("target:not_nullable",),
    ),
    Case(
        "unknown_label",
        "label7.csv",
        edited(lambda f: _set(f, 8, "target", 7)),
        "rows",
        ("target:isin([0, 1])",),
    ),
    Case(
        "negative_measurement",
        "negative.csv",
        edited(lambda f: _set(f, 9, "worst radius", -1.0)),
        "rows",
        ("worst radius:greater_than_or_equal_to(0)",),
    ),
    Case(
        "text_in_one_cell",
        "typo.csv",
        edited(lambda f: _set(f, 10, "mean compactness", "0.1O")),
        "rows",
        ("mean compactness:dtype",),
    ),
    Case(
        "mixed_crlf_and_quoted_newlines",
        "windows.csv",
        _mixed_line_endings_with_quoted_newline(),
        "pass",
        (),
    ),
]


@pytest.fixture(scope="module")
def champion_project(
    tmp_path_factory: pytest.TempPathFactory, mlflow_db_template: Path
) -> Iterator[Project]:
    with new_project(tmp_path_factory.mktemp("battery"), mlflow_db_template) as project:
        result = project.materialize()
        assert result.success, failure_messages(result)
        yield project


def _clear(folder: Path) -> None:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(champion_project: Project, case: Case) -> None:
    project = champion_project
    _clear(project.landing)
    (project.landing / case.filename).write_bytes(case.payload)
    validated_before = project.snapshot("validated_dataset")
    champion_before = project.champion_version()

    result = project.materialize()
    message = failure_messages(result)

    if case.outcome in {"file", "failed"}:
        assert not result.success, f"{case.name} should have been refused"
        for words in case.expect:
            assert words in message, f"{words!r} not in:\n{message}"
        # Nothing lost: the last good data and the champion stand.
        after = project.snapshot("validated_dataset")
        assert {name: after[name] for name in validated_before} == validated_before
        assert project.champion_version() == champion_before
    # The file stays where it landed (its partition shows why it failed) until replaced.
    assert (project.landing / case.filename).read_bytes() == case.payload
    if case.outcome == "file":
        status = project.instance.get_status_by_partition(
            dg.AssetKey("raw_dataset"), [case.filename], landed_files
        )
        assert status == {case.filename: dg.AssetPartitionStatus.FAILED}
    if case.outcome == "rows":
        assert result.success, message
        quarantined = project.load("quarantined_rows")
        reasons = {
            f"{c}:{r}"
            for c, r in zip(
                quarantined["quarantine_column"], quarantined["quarantine_rule"], strict=True
            )
        }
        for words in case.expect:
            assert any(r.startswith(words) for r in reasons), f"{words!r} not in {reasons}"
        assert set(quarantined["_source_file"]) == {case.filename}
        validated = project.load("validated_dataset")
        assert len(validated) + quarantined["_source_row"].nunique() == len(DEMO)
    if case.outcome == "pass":
        assert result.success, message
        assert project.load("quarantined_rows").empty
        assert len(project.load("validated_dataset")) == len(DEMO)


def test_text_in_a_cell_of_one_file_among_several(champion_project: Project) -> None:
    """One file's column parses as numbers, another's as text: the mixed column is stored and
    validated per file, the bad cell quarantined, the good file's values kept exactly."""
    project = champion_project
    _clear(project.landing)
    (project.landing / "a_good.csv").write_bytes(csv(DEMO.iloc[:300]))
    typo = DEMO.iloc[300:].reset_index(drop=True)
    _set(typo, 4, "mean compactness", "0.1O")
    (project.landing / "b_typo.csv").write_bytes(csv(typo))

    result = project.materialize()
    assert result.success, failure_messages(result)
    quarantined = project.load("quarantined_rows")
    assert list(quarantined["_source_file"].astype(str)) == ["b_typo.csv"]
    assert list(quarantined["_source_row"]) == [6]  # header is line 1, row 4 is line 6
    assert list(quarantined["quarantine_column"]) == ["mean compactness"]
    assert list(quarantined["quarantine_rule"]) == ["dtype"]
    validated = project.load("validated_dataset")
    assert len(validated) == len(DEMO) - 1
    good = validated[validated["_source_file"].astype(str) == "a_good.csv"]
    expected = pd.read_csv(io.BytesIO(csv(DEMO.iloc[:300])))
    assert good["mean compactness"].tolist() == expected["mean compactness"].tolist()
