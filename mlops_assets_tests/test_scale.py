"""A table large enough for the bounded sweep, through `mlops-assets run` as a user runs it.

The large sizes (1M, 10M rows) are measured by benchmarks/scale.py, not here."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops_assets.cli import main
from mlops_assets.quality.schema import infer_schema
from mlops_assets.resources.mlflow import CHAMPION, ModelRegistry
from mlops_assets.settings import Settings

ROWS = 50_000


def _table(rows: int, seed: int = 11) -> pd.DataFrame:
    """Numeric features with nulls, a categorical column that carries signal, three classes."""
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=rows,
        n_features=10,
        n_informative=6,
        n_classes=3,
        n_clusters_per_class=2,
        random_state=seed,
    )
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(10)])
    frame["band"] = pd.cut(x[:, 0], [-np.inf, -1, 0, 1, np.inf], labels=list("abcd")).astype(str)
    rng = np.random.default_rng(seed)
    frame.loc[rng.random(rows) < 0.01, "f3"] = np.nan
    frame["label"] = np.array(["low", "mid", "high"])[y]
    return frame


@pytest.fixture
def large_project(
    tmp_path: Path, mlflow_db_template: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    shutil.copyfile(mlflow_db_template, home / "mlflow.db")
    landing = tmp_path / "landing"
    landing.mkdir()
    frame = _table(ROWS)
    frame.to_csv(landing / "table.csv", index=False)
    (tmp_path / "table.yaml").write_text(infer_schema(frame, "label", "table").to_yaml())
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLOPS_PROJECT_DIR", str(tmp_path))
    monkeypatch.setenv("MLOPS_HOME", str(home))
    monkeypatch.setenv("MLOPS_LANDING_DIR", str(landing))
    monkeypatch.setenv("MLOPS_SCHEMA", "table.yaml")
    monkeypatch.setenv("MLOPS_TARGET", "label")
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    shutil.copyfile(Path(__file__).parents[1] / "dagster.yaml", tmp_path / "dagster.yaml")
    return tmp_path


def test_fifty_thousand_rows_race_refit_and_register_a_small_model(
    large_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run"]) == 0
    out = capsys.readouterr().out
    assert f"rows read {ROWS}, validated {ROWS}, quarantined 0" in out
    # The sweep reports as it goes, between trained_model's start and end lines.
    training = out.split("  trained_model ...\n", 1)[1].split("  trained_model done (", 1)[0]
    settings = Settings.from_env()
    trained = json.loads((settings.storage_dir / "trained_model.json").read_text())
    # Four fifths of the rows train, each row drawing its side of the holdout.
    train_rows = ROWS - trained["holdout_rows"]
    assert abs(train_rows - 40_000) < 400
    assert (
        f"5 candidates on {train_rows:,} training rows: successive halving over 6,666, 20,000 rows"
        in training
    )
    assert "rung 2/2: 2 candidates on 20,000 rows" in training
    assert "refitting the best" in training and f"on all {train_rows:,} training rows" in training
    assert "became champion" in out

    assert trained["search"] == "successive halving over 6,666, 20,000 rows"
    rows = pd.DataFrame(trained["candidates"])
    assert set(rows["family"]) == {"random_forest", "hist_gradient_boosting"}
    assert sorted(rows["cv_rows"].unique()) == [6666, 20000]
    assert (rows["rung"] == 2).sum() == 2
    assert trained["holdout_metrics"]["f1_macro"] > 0.85
    assert 0 < trained["model_artifact_bytes"] < 50_000_000
    assert trained["classes"] == ["high", "low", "mid"]

    registry = ModelRegistry(tracking_uri=settings.tracking_uri, model_name="table_classifier")
    champion = registry.version_for_alias(CHAMPION)
    assert champion is not None
    assert champion.tags["model.artifact_bytes"] == str(trained["model_artifact_bytes"])
    assert champion.tags["model.family"] == trained["family"]
    # Every candidate is a nested MLflow run of the training run.
    client = registry.client()
    nested = client.search_runs(
        [client.get_run(trained["run_id"]).info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{trained['run_id']}'",
    )
    assert len(nested) == len(rows)
    assert {run.data.params["family"] for run in nested} == set(rows["family"])
