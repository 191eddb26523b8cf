"""The whole graph, materialized in-process against a temporary Dagster instance and MLflow
store: what lands in storage, in the event log and in the registry."""

import json
import re
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import yaml

from mlops_assets.partitions import landed_files
from mlops_assets.quality.schema import infer_schema
from mlops_assets.resources.io import read_frame
from mlops_assets.resources.mlflow import CHALLENGER, ModelRegistry
from mlops_assets.runner import summarize
from mlops_assets.sources import DEMO_SOURCE

from .conftest import QUICK_TRAINING, Project, failure_messages


def _metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    for event in result.get_asset_materialization_events():
        materialization = event.materialization
        if materialization.asset_key == dg.AssetKey(asset):
            return {k: v.value for k, v in materialization.metadata.items()}
    raise AssertionError(f"{asset} was not materialized")


def _checks(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {
        f"{e.asset_key.to_user_string()}:{e.check_name}": e.passed
        for e in result.get_asset_check_evaluations()
    }


def test_demo_data_end_to_end(project: Project) -> None:
    result = project.materialize()
    assert result.success, failure_messages(result)

    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert materialized == {
        "raw_dataset",
        "validated_dataset",
        "quarantined_rows",
        "trained_model",
        "registered_model",
        "batch_predictions",
        "drift_report",
        "model_report",
    }
    assert _checks(result) == {
        "raw_dataset:files_readable": True,
        "validated_dataset:dataset_rules": True,
        "validated_dataset:rows_reconcile": True,
        "registered_model:promotion_gate": True,
        "drift_report:no_drift": True,
    }

    raw = _metadata(result, "raw_dataset")
    assert raw["dagster/row_count"] == 569
    assert raw["demo_data"] is True
    assert raw["class_distribution"] == {"1": 357, "0": 212}
    assert len(project.load("validated_dataset")) == 569

    trained = _metadata(result, "trained_model")
    assert trained["f1_macro"] > 0.9
    assert trained["mlflow_run"].startswith("http://127.0.0.1:5000/#/experiments/")

    registered = _metadata(result, "registered_model")
    assert registered["version"] == 1 and registered["champion"] is True
    assert registered["model_version"].endswith("/#/models/breast_cancer_classifier/versions/1")

    registry = project.registry()
    assert project.champion_version() == 1
    version = registry.client().get_model_version("breast_cancer_classifier", "1")
    assert version.tags["gate.decision"] == "promoted"
    assert version.tags["dagster.run_id"] == result.run_id
    run = registry.client().get_run(version.run_id)
    assert run.data.tags["dagster_run_id"] == result.run_id
    # The UI shows four significant digits; MLflow keeps the full value.
    assert run.data.metrics["holdout_f1_macro"] == pytest.approx(trained["f1_macro"], abs=5e-5)
    assert run.data.tags["mlflow.runName"] == "mlops_pipeline"
    # The registered model loads through skops with our trusted list and predicts.
    model = registry.load_model(1)
    demo = project.load("validated_dataset")
    assert set(model.predict(demo.drop(columns=["target", "_source_file", "_source_row"]))) == {
        0,
        1,
    }
    # The artifacts live under MLOPS_HOME, not in the working folder.
    assert any(project.settings.artifacts_dir.rglob("MLmodel"))


def test_data_version_is_content_fingerprint(project: Project, demo_frame: pd.DataFrame) -> None:
    project.land("a.csv", demo_frame)
    first = project.materialize()
    second = project.materialize()
    third_frame = demo_frame.copy()
    third_frame.loc[0, "mean radius"] += 1
    project.land("a.csv", third_frame)
    third = project.materialize()

    def version(result: dg.ExecuteInProcessResult) -> str:
        return result.get_asset_materialization_events()[0].materialization.tags[
            "dagster/data_version"
        ]

    assert version(first) == version(second) != version(third)
    assert _metadata(first, "raw_dataset")["demo_data"] is False


def test_few_bad_rows_are_quarantined_with_reasons(
    project: Project, demo_frame: pd.DataFrame
) -> None:
    frame = demo_frame.copy()
    frame.loc[3, "mean radius"] = np.inf
    frame.loc[10, "mean area"] = np.nan
    frame.loc[20, "target"] = 7
    frame.loc[30, "worst area"] = -5.0
    project.land("batch.csv", frame)
    result = project.materialize()
    assert result.success, failure_messages(result)

    validated = _metadata(result, "validated_dataset")
    assert validated["rows_in"] == 569
    assert validated["dagster/row_count"] == 565
    assert validated["rows_quarantined"] == 4
    quarantined = project.load("quarantined_rows")
    reasons = {
        (int(row), column, rule)
        for row, column, rule in quarantined[
            ["_source_row", "quarantine_column", "quarantine_rule"]
        ].itertuples(index=False, name=None)
    }
    # _source_row is the line in the file: the header is line 1, frame index 0 is line 2.
    assert reasons == {
        (5, "mean radius", "finite"),
        (5, "mean radius", "less_than_or_equal_to(281.0)"),
        (12, "mean area", "not_nullable"),
        (22, "target", "isin([0, 1])"),
        (32, "worst area", "greater_than_or_equal_to(0)"),
    }
    assert set(quarantined["_source_file"]) == {"batch.csv"}
    assert _checks(result)["validated_dataset:rows_reconcile"] is True


def test_dataset_failure_keeps_previous_data_and_champion(
    project: Project, demo_frame: pd.DataFrame
) -> None:
    assert project.materialize().success
    before = project.snapshot("validated_dataset")

    broken = demo_frame.drop(columns=["mean radius"]).assign(surprise=1.0)
    path = project.land("broken.csv", broken)
    result = project.materialize()

    assert not result.success
    message = failure_messages(result)
    assert "broken.csv: column 'mean radius': column_in_dataframe" in message
    assert "broken.csv: column 'surprise': column_in_schema" in message
    assert _checks(result)["validated_dataset:dataset_rules"] is False
    # Nothing downstream ran; nothing was lost.
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert materialized == {"raw_dataset"}
    assert project.snapshot("validated_dataset") == before
    assert project.champion_version() == 1
    assert path.exists()


def test_single_class_fails_with_column_and_rule(
    project: Project, demo_frame: pd.DataFrame
) -> None:
    project.land("one_class.csv", demo_frame[demo_frame["target"] == 1])
    result = project.materialize()
    assert not result.success
    assert "column 'target': min_classes: a single class" in failure_messages(result)
    assert project.champion_version() is None


def test_worse_challenger_is_registered_but_not_champion(
    project: Project, demo_frame: pd.DataFrame
) -> None:
    assert project.materialize().success
    noisy = demo_frame.copy()
    rng = np.random.default_rng(0)
    flip = rng.random(len(noisy)) < 0.1
    noisy.loc[flip, "target"] = 1 - noisy.loc[flip, "target"]
    project.land("noisy.csv", noisy)

    # Three trees learn the flipped labels by heart: worse on the holdout than the champion,
    # still above the gate's floor (at a fifth of the labels flipped they fell below it).
    one_tree = {
        "ops": {
            "trained_model": {
                "config": {"families": ["random_forest"], "random_forest": {"n_estimators": [3]}}
            }
        }
    }
    result = project.materialize(run_config=one_tree)
    assert result.success, failure_messages(result)
    registered = _metadata(result, "registered_model")
    assert registered["version"] == 2
    assert registered["champion"] is False
    assert "regresses against champion v1" in registered["decision"]
    assert _checks(result)["registered_model:promotion_gate"] is False
    assert project.champion_version() == 1
    challenger = project.registry().version_for_alias(CHALLENGER)
    assert challenger is not None and int(challenger.version) == 2


def test_multiclass_categorical_data_with_user_schema(project: Project) -> None:
    rng = np.random.default_rng(7)
    n = 300
    colour = rng.choice(["red", "green", "blue"], size=n)
    size = rng.normal(10, 2, size=n)
    weight = rng.normal(50, 10, size=n)
    label = np.where(colour == "red", "apple", np.where(size > 10, "melon", "plum"))
    frame = pd.DataFrame({"colour": colour, "size": size, "weight": weight, "fruit": label})
    frame.loc[[5, 17, 40], "weight"] = np.nan  # missing values the schema allows: imputed
    schema_path = project.settings.project_dir / "fruit.yaml"
    schema_path.write_text(infer_schema(frame, "fruit", "fruit").to_yaml())
    assert yaml.safe_load(schema_path.read_text())["metadata"]["target"] == "fruit"

    bad = frame.copy()
    bad.loc[0, "colour"] = "purple"  # an unknown category: quarantined
    project.land("fruit.csv", bad)
    project.settings = project.settings.with_overrides(schema_path=schema_path)

    result = project.materialize()
    assert result.success, failure_messages(result)
    assert _metadata(result, "validated_dataset")["rows_quarantined"] == 1
    registered = _metadata(result, "registered_model")
    assert registered["champion"] is True
    model = project.registry().load_model(registered["version"])
    predicted = model.predict(frame.drop(columns=["fruit"]).head(20))
    assert set(predicted) <= {"apple", "melon", "plum"}
    assert project.settings.registered_model_name == "fruit_classifier"


def test_unreadable_file_fails_only_its_own_partition(
    project: Project, demo_frame: pd.DataFrame
) -> None:
    project.land("good.csv", demo_frame)
    (project.landing / "empty.csv").write_bytes(b"")
    result = project.materialize()
    assert result.success, failure_messages(result)
    assert not result.files["empty.csv"].success
    assert "empty.csv: unreadable: the file is empty (0 bytes)" in failure_messages(
        result.files["empty.csv"]
    )
    assert result.files["good.csv"].success
    # The file stays where it was: its partition shows the failure until it is replaced.
    assert (project.landing / "empty.csv").exists()
    status = project.instance.get_status_by_partition(
        dg.AssetKey("raw_dataset"), ["empty.csv", "good.csv"], landed_files
    )
    assert status == {
        "empty.csv": dg.AssetPartitionStatus.FAILED,
        "good.csv": dg.AssetPartitionStatus.MATERIALIZED,
    }
    trained = _metadata(result, "trained_model")
    assert trained["files"] == 1
    assert _metadata(result, "raw_dataset")["dagster/row_count"] == 569
    assert project.champion_version() == 1


def test_a_large_file_is_read_beside_the_training_imports_a_small_one_alone(
    project: Project, demo_frame: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """raw_dataset imports what trained_model starts with (scikit-learn) on a thread while it
    reads a file large enough to take a while; a small file is read alone. The threshold is
    lowered so the demo data is large."""
    from contextlib import contextmanager

    from mlops_assets import preload
    from mlops_assets.assets import data
    from mlops_assets.definitions import build_resources
    from mlops_assets.partitions import LANDED_FILES

    seen: list[tuple[tuple[str, ...], bool]] = []
    real = preload.preloading

    @contextmanager
    def recording(
        modules: tuple[str, ...] = preload.AFTER_TRAINING, enabled: bool = True
    ) -> Iterator[None]:
        seen.append((modules, enabled))
        with real(modules, enabled):
            yield

    monkeypatch.setattr(preload, "preloading", recording)
    big = project.land("big.csv", demo_frame)
    project.land("small.csv", demo_frame.head(50))
    monkeypatch.setattr(data, "PRELOAD_TRAINING_BYTES", big.stat().st_size)
    project.instance.add_dynamic_partitions(LANDED_FILES, ["big.csv", "small.csv"])
    for key in ("big.csv", "small.csv"):
        result = dg.materialize(
            [data.raw_dataset],
            partition_key=key,
            instance=project.instance,
            resources=build_resources(project.settings),
        )
        assert result.success
    assert seen == [(preload.TRAINING, True), (preload.TRAINING, False)]


def test_bad_file_among_good_ones_fails_alone_and_the_champion_learns_from_the_rest(
    project: Project, demo_frame: pd.DataFrame
) -> None:
    halves = demo_frame.iloc[:300], demo_frame.iloc[300:]
    project.land("a.csv", halves[0])
    project.land("b_renamed.csv", halves[1].rename(columns={"mean radius": "radius"}))
    project.land("c.csv", halves[1])
    result = project.materialize(run_config=QUICK_TRAINING)
    assert result.success, failure_messages(result)
    summary = summarize(result)
    assert [f.name for f in summary.failed_files] == ["b_renamed.csv"]
    assert "column 'mean radius': column_in_dataframe" in str(summary.failed_files[0].error)
    assert "b_renamed.csv: FAILED" in summary.render()
    trained = _metadata(result, "trained_model")
    assert trained["rows"] == len(demo_frame)
    record = result.downstream.output_for_node("trained_model")
    assert sorted(record["files"]) == ["a.csv", "c.csv"]
    version = project.registry().client().get_model_version("breast_cancer_classifier", "1")
    assert json.loads(version.tags["manifest.files"]).keys() == {"a.csv", "c.csv"}

    # The file is fixed (new rows, not a copy of c.csv's): training takes it in.
    fixed = halves[1].iloc[:100].copy()
    fixed["mean radius"] += 0.01
    project.land("b_renamed.csv", fixed)
    again = project.materialize(run_config=QUICK_TRAINING)
    assert again.success and not summarize(again).failed_files
    assert sorted(again.downstream.output_for_node("trained_model")["files"]) == [
        "a.csv",
        "b_renamed.csv",
        "c.csv",
    ]

    # A file that leaves the folder leaves the training set: its partition is retired.
    (project.landing / "c.csv").unlink()
    after = project.materialize(run_config=QUICK_TRAINING)
    assert after.success, failure_messages(after)
    assert sorted(after.downstream.output_for_node("trained_model")["files"]) == [
        "a.csv",
        "b_renamed.csv",
    ]
    assert sorted(project.instance.get_dynamic_partitions("landed_files")) == [
        "a.csv",
        "b_renamed.csv",
    ]


def test_demo_source_name(project: Project) -> None:
    result = project.materialize(run_config=QUICK_TRAINING)
    assert result.success, failure_messages(result)
    raw = project.load("raw_dataset")
    assert set(raw["_source_file"]) == {DEMO_SOURCE}
    assert _metadata(result, "trained_model")["family"] == "random_forest"
    assert _metadata(result, "trained_model")["params"] == {"n_estimators": 10}


def test_batch_predictions_use_the_champion_and_refuse_bad_input(
    project: Project, demo_frame: pd.DataFrame
) -> None:
    scoring = project.settings.scoring_dir
    demo_frame.drop(columns=["target"]).head(50).to_csv(scoring / "today.csv", index=False)
    result = project.materialize(run_config=QUICK_TRAINING)
    assert result.success, failure_messages(result)
    predictions = read_frame(project.stored("batch_predictions"))
    assert len(predictions) == 50
    assert set(predictions["model_version"]) == {1}
    assert set(predictions["prediction"]) <= {0, 1}
    # The probability of the predicted class: at least a half with two classes.
    assert (predictions["confidence"] >= 0.5).all()
    assert set(predictions["_source_file"]) == {"today.csv"}
    metadata = _metadata(result, "batch_predictions")
    assert metadata["model_version"] == 1 and metadata["dagster/row_count"] == 50

    # A file that breaks the schema (a missing feature) is refused, naming file and column.
    demo_frame.drop(columns=["target", "mean area"]).head(5).to_csv(
        scoring / "broken.csv", index=False
    )
    job = (
        project.definitions()
        .resolve_implicit_global_asset_job_def()
        .get_subset(asset_selection={dg.AssetKey("batch_predictions")})
    )
    refused = job.execute_in_process(instance=project.instance, raise_on_error=False)
    assert not refused.success
    message = failure_messages(refused)
    assert "broken.csv: column 'mean area': column_in_dataframe" in message
    assert len(read_frame(project.stored("batch_predictions"))) == 50  # the last good ones stay


def test_the_report_draws_on_the_holdout_predictions_registered_model_stored(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """registered_model keeps what the registered artifact predicted on the holdout; the
    report draws from it instead of loading the model and running it over the holdout again,
    and falls back to doing that when the predictions are missing."""
    from sklearn.metrics import accuracy_score, f1_score

    result = project.materialize(run_config=QUICK_TRAINING)
    assert result.success, failure_messages(result)
    record = json.loads(project.stored("registered_model").read_text())
    stored = Path(record["holdout_predictions"])
    table = read_frame(stored)
    # The drift sample is in MLflow with the run; its staging copy did not stay behind.
    assert not list(project.settings.reports_dir.rglob("training_sample.parquet"))
    holdout_rows = json.loads(project.stored("trained_model").read_text())["holdout_rows"]
    assert len(table) == holdout_rows and 90 < holdout_rows < 140  # about a fifth of 569
    assert record["classes"] == [0, 1]
    assert np.allclose(table["proba_0"] + table["proba_1"], 1.0, atol=1e-6)
    assert (table["predicted"] == (table["proba_1"] > table["proba_0"]).astype(int)).all()
    # The predictions the gate scored: the version's metrics come from them.
    metrics = record["challenger_metrics"]
    assert accuracy_score(table["label"], table["predicted"]) == metrics["accuracy"]
    assert f1_score(table["label"], table["predicted"], average="macro") == metrics["f1_macro"]

    job = (
        project.definitions()
        .resolve_implicit_global_asset_job_def()
        .get_subset(asset_selection={dg.AssetKey("model_report")})
    )

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("model_report loaded the model")

    with monkeypatch.context() as patched:
        patched.setattr(ModelRegistry, "load_model", refuse)
        drawn = job.execute_in_process(instance=project.instance, raise_on_error=False)
    assert drawn.success, failure_messages(drawn)
    matrix = stored.parent / "confusion_matrix.png"
    report = stored.parent.with_suffix(".html")

    def drawn_now() -> tuple[bytes, str]:
        # The same report, plots and data summary (569 rows, read from the label column alone
        # on the stored path) whichever way, but for when it was generated.
        page = re.sub(r"generated [0-9: -]+ UTC", "generated at", report.read_text())
        return matrix.read_bytes(), page

    from_stored = drawn_now()
    assert "569" in from_stored[1]

    stored.unlink()
    redrawn = job.execute_in_process(instance=project.instance, raise_on_error=False)
    assert redrawn.success, failure_messages(redrawn)
    assert drawn_now() == from_stored
    assert (stored.parent / "roc.png").is_file()


def test_dashboard_plots_report_and_links(project: Project) -> None:
    result = project.materialize(run_config=QUICK_TRAINING)
    assert result.success, failure_messages(result)
    report_metadata = _metadata(result, "model_report")
    assert report_metadata["confusion_matrix"].startswith(
        "![confusion_matrix](data:image/png;base64,"
    )
    assert "roc" in report_metadata
    report = Path(report_metadata["model_report"])
    html = report.read_text()
    assert report.name == "v1.html" and "breast_cancer_classifier" in html
    assert "first model" in html and "data:image/png;base64," in html
    client = project.registry().client()
    version = client.get_model_version("breast_cancer_classifier", "1")
    artifacts = {a.path for a in client.list_artifacts(version.run_id, "plots")}
    assert {"plots/confusion_matrix.png", "plots/roc.png"} <= artifacts
    assert {a.path for a in client.list_artifacts(version.run_id, "report")} == {"report/v1.html"}
    # The report opens in MLflow's artifact view (a file:// link would not open from the UI).
    experiment = client.get_run(version.run_id).info.experiment_id
    assert report_metadata["model_report_url"] == (
        f"http://127.0.0.1:5000/#/experiments/{experiment}/runs/{version.run_id}"
        "/artifacts/report/v1.html"
    )
    tags = version.tags
    for key in (
        "manifest.dataset_fingerprint",
        "manifest.rows",
        "manifest.seed",
        "manifest.lock_hash",
        "manifest.python",
        "manifest.packages",
        "manifest.code_versions",
        "manifest.data_versions",
        "manifest.schema_hash",
        "dagster.run_url",
    ):
        assert key in tags, key
    assert tags["manifest.rows"] == "569"
    assert tags["dagster.run_url"].endswith(f"/runs/{result.run_id}")


def test_drift_is_flagged_on_shifted_data_not_on_a_resample(
    project: Project, demo_frame: pd.DataFrame
) -> None:
    assert project.materialize(run_config=QUICK_TRAINING).success
    resample = demo_frame.sample(frac=0.5, random_state=3)  # a subsample: no duplicates
    project.land("resample.csv", resample)
    result = project.materialize(run_config=QUICK_TRAINING)
    assert result.success, failure_messages(result)
    assert _checks(result)["drift_report:no_drift"] is True

    shifted = demo_frame.copy()
    shifted["mean radius"] *= 1.5
    shifted["worst texture"] += 2 * shifted["worst texture"].std()
    project.land("resample.csv", shifted)
    result = project.materialize(run_config=QUICK_TRAINING)
    assert result.success, failure_messages(result)
    assert _checks(result)["drift_report:no_drift"] is False
    table = read_frame(project.stored("drift_report", "resample.csv"))
    assert {"mean radius", "worst texture"} <= set(table.loc[table["drifted"], "feature"])


def test_revalidation_after_a_schema_change_validates_every_file_again(
    project: Project, demo_frame: pd.DataFrame
) -> None:
    schema_path = project.settings.project_dir / "cancer.yaml"
    schema_path.write_text(infer_schema(demo_frame, "target", "cancer").to_yaml())
    project.settings = project.settings.with_overrides(schema_path=schema_path)
    project.land("a.csv", demo_frame.iloc[:300])
    project.land("b.csv", demo_frame.iloc[300:])
    first = project.materialize(run_config=QUICK_TRAINING)
    assert first.success, failure_messages(first)
    assert project.load("quarantined_rows").empty

    # The schema tightens a range: rows that passed before are now out of it.
    spec = yaml.safe_load(schema_path.read_text())
    spec["columns"]["mean radius"]["in_range"]["max_value"] = 22.0
    schema_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    too_large = demo_frame["mean radius"] > 22.0
    assert 0 < too_large.sum() < 0.1 * len(demo_frame)

    again = project.materialize(run_config=QUICK_TRAINING, revalidate=True)
    assert again.success, failure_messages(again)
    materialized = [e.asset_key.to_user_string() for e in again.get_asset_materialization_events()]
    assert "raw_dataset" not in materialized  # the files are not read again
    assert materialized.count("validated_dataset") == 2  # each file validated again
    quarantined = project.load("quarantined_rows")
    assert set(quarantined["quarantine_column"]) == {"mean radius"}
    assert len(quarantined) == too_large.sum()
    assert len(project.load("validated_dataset")) == len(demo_frame) - too_large.sum()
    assert _metadata(again, "trained_model")["rows"] == len(demo_frame) - too_large.sum()


def test_a_home_from_before_partitions_keeps_its_champion(
    project: Project, demo_frame: pd.DataFrame
) -> None:
    """An MLOPS_HOME written before files were partitions: unpartitioned materializations in the
    event log and whole-dataset values in storage. Its champion stays and the new runs go on."""
    assert project.materialize(run_config=QUICK_TRAINING).success
    champion = project.champion_version()
    storage = project.settings.storage_dir
    for asset in ("raw_dataset", "validated_dataset", "quarantined_rows", "drift_report"):
        # What the previous version stored and recorded for the whole dataset.
        (storage / f"{asset}.parquet").write_bytes(b"not read any more")
        project.instance.report_runless_asset_event(
            dg.AssetMaterialization(asset, metadata={"dagster/row_count": 569})
        )
    project.land("a.csv", demo_frame.iloc[:300])
    result = project.materialize(run_config=QUICK_TRAINING)
    assert result.success, failure_messages(result)
    assert project.champion_version() in {champion, champion + 1}  # type: ignore[operator]
    assert _metadata(result, "trained_model")["files"] == 1
    assert (storage / "validated_dataset" / "a.csv.parquet").exists()
