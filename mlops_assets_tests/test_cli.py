"""The console script, run in-process against a temporary project."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from mlops_assets.cli import main
from mlops_assets.runner import PARTIAL_EXIT_CODE
from mlops_assets.sources import DEMO_SOURCE


@pytest.fixture
def cli_project(tmp_path: Path, mlflow_db_template: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    shutil.copyfile(mlflow_db_template, home / "mlflow.db")
    for name in ("MLFLOW_TRACKING_URI", "MLOPS_SCHEMA", "MLOPS_LANDING_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLOPS_PROJECT_DIR", str(tmp_path))
    monkeypatch.setenv("MLOPS_HOME", str(home))
    # Set through monkeypatch so the value `prepare_home` exports is undone after the test.
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    shutil.copyfile(Path(__file__).parents[1] / "dagster.yaml", tmp_path / "dagster.yaml")
    return tmp_path


def test_status_before_anything_ran(cli_project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--json"]) == 0
    state = json.loads(capsys.readouterr().out)
    assert state["champion"] is None
    assert state["assets"]["raw_dataset"] == {"last_materialized": None, "data_version": None}


def test_run_then_status(cli_project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run"]) == 0
    out = capsys.readouterr().out
    assert "rows read 569, validated 569, quarantined 0" in out
    # Progress: a line as each step starts and ends, not Dagster's event log.
    assert "  trained_model ...\n" in out and "  trained_model done (" in out
    assert "STEP_START" not in out
    assert "registered breast_cancer_classifier v1: became champion" in out
    # The project's dagster.yaml became the instance's.
    instance_yaml = cli_project / "home" / "dagster" / "dagster.yaml"
    assert "telemetry" in instance_yaml.read_text()

    assert main(["status", "--json"]) == 0
    state = json.loads(capsys.readouterr().out)
    assert state["champion"]["model"] == "breast_cancer_classifier"
    assert state["champion"]["version"] == 1
    assert state["champion"]["metrics"]["f1_macro"] > 0.9
    assert state["latest"]["version"] == 1 and state["latest"]["aliases"] == ["champion"]
    assert state["other_models"] == []
    assert set(state["assets"]) == {
        "raw_dataset",
        "validated_dataset",
        "trained_model",
        "registered_model",
    }
    for asset in state["assets"].values():
        assert asset["last_materialized"] and asset["data_version"]
    assert state["files"] == {
        DEMO_SOURCE: {"raw_dataset": "MATERIALIZED", "validated_dataset": "MATERIALIZED"}
    }


def test_failed_run_exits_non_zero_with_file_column_and_rule(
    cli_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sklearn.datasets import load_breast_cancer

    landing = cli_project / "data" / "landing"
    landing.mkdir(parents=True)
    frame = load_breast_cancer(as_frame=True).frame.drop(columns=["worst area"])
    frame.to_csv(landing / "missing.csv", index=False)
    assert main(["run"]) == 1
    captured = capsys.readouterr()
    err = captured.err
    assert "FAILED" in err
    assert "validation FAILED" in captured.out
    # Said once, in the summary: not again by Dagster's step and run failure events.
    assert (err + captured.out).count("missing.csv: column 'worst area': column_in_dataframe") == 1
    assert "no validated data or champion yet" in err


def test_schema_infer_writes_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "homes.csv"
    pd.DataFrame({"rooms": [1, 2, 3], "kind": ["a", "b", "a"]}).to_csv(data, index=False)
    out = tmp_path / "homes.yaml"
    assert main(["schema", "infer", str(data), "--target", "kind", "-o", str(out)]) == 0
    assert "target 'kind'" in capsys.readouterr().out
    assert "target: kind" in out.read_text()
    assert main(["schema", "infer", str(data), "--target", "nope"]) == 2
    assert "target column 'nope' is not in the data" in capsys.readouterr().err


def test_run_says_which_rows_were_quarantined_and_where_they_are(
    cli_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sklearn.datasets import load_breast_cancer

    landing = cli_project / "data" / "landing"
    landing.mkdir(parents=True)
    frame = load_breast_cancer(as_frame=True).frame
    frame.loc[3, "mean radius"] = -1.0
    frame.to_csv(landing / "batch.csv", index=False)
    assert main(["run"]) == 0
    out = capsys.readouterr().out
    assert "quarantined 1" in out
    assert "batch.csv:5 column 'mean radius' greater_than_or_equal_to(0): -1.0" in out
    stored = cli_project / "home" / "storage" / "quarantined_rows" / "batch.csv.parquet"
    assert f"all of them in {stored}" in out


def test_run_lists_each_file_and_status_shows_the_one_that_failed(
    cli_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sklearn.datasets import load_breast_cancer

    landing = cli_project / "data" / "landing"
    landing.mkdir(parents=True)
    frame = load_breast_cancer(as_frame=True).frame
    frame.iloc[:300].to_csv(landing / "a.csv", index=False)
    frame.iloc[300:].drop(columns=["worst area"]).to_csv(landing / "b.csv", index=False)
    # A model was registered from a.csv, but a script running this sees that b.csv failed.
    assert main(["run"]) == PARTIAL_EXIT_CODE
    out = capsys.readouterr().out
    assert "succeeded, but 1 of 2 landed files failed" in out
    assert "files: 1 passed, 1 failed" in out
    assert "a.csv: 300 rows, validated 300, quarantined 0" in out
    assert "b.csv: FAILED: validation:" in out
    assert "b.csv: column 'worst area': column_in_dataframe" in out
    assert "registered breast_cancer_classifier v1: became champion" in out

    assert main(["status", "--json"]) == 0
    files = json.loads(capsys.readouterr().out)["files"]
    assert files == {
        "a.csv": {"raw_dataset": "MATERIALIZED", "validated_dataset": "MATERIALIZED"},
        "b.csv": {"raw_dataset": "MATERIALIZED", "validated_dataset": "FAILED"},
    }
    assert main(["status"]) == 0
    assert "landed files: 2, 1 failed" in capsys.readouterr().out
