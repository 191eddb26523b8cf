"""The graph itself: keys, dependencies, checks, resources, and that it loads."""

import dagster as dg

from mlops_assets.definitions import ASSET_KEYS, PIPELINE_JOB, build_definitions, defs
from mlops_assets.partitions import landed_files
from mlops_assets.settings import Settings


def test_definitions_load_and_validate() -> None:
    dg.Definitions.validate_loadable(defs)
    assert defs.resolve_job_def(PIPELINE_JOB) is not None


def test_asset_keys_and_lineage() -> None:
    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert keys == {
        *ASSET_KEYS,
        "quarantined_rows",
        "batch_predictions",
        "drift_report",
        "model_report",
    }

    def parents(key: str) -> set[str]:
        return {k.to_user_string() for k in graph.get(dg.AssetKey(key)).parent_keys}

    assert parents("raw_dataset") == set()
    assert parents("validated_dataset") == {"raw_dataset"}
    assert parents("quarantined_rows") == {"raw_dataset"}
    assert parents("trained_model") == {"validated_dataset", "drift_report"}
    assert parents("drift_report") == {"validated_dataset"}
    assert parents("registered_model") == {"trained_model", "validated_dataset"}
    assert parents("batch_predictions") == {"registered_model"}
    assert parents("model_report") == {"registered_model", "trained_model", "validated_dataset"}
    # One partition per landed file for the files' assets; the model is built from all of them.
    partitioned = {k for k in keys if graph.get(dg.AssetKey(k)).partitions_def == landed_files}
    assert partitioned == {"raw_dataset", "validated_dataset", "quarantined_rows", "drift_report"}
    groups = {k: graph.get(dg.AssetKey(k)).group_name for k in ASSET_KEYS}
    assert groups == {
        "raw_dataset": "data",
        "validated_dataset": "data",
        "trained_model": "model",
        "registered_model": "model",
    }


def test_checks_and_which_ones_block() -> None:
    graph = defs.resolve_asset_graph()
    checks = {
        f"{key.asset_key.to_user_string()}:{key.name}": graph.get_check_spec(key).blocking
        for key in graph.asset_check_keys
    }
    assert checks == {
        "raw_dataset:files_readable": False,
        "validated_dataset:dataset_rules": True,
        "validated_dataset:rows_reconcile": True,
        "registered_model:promotion_gate": True,
        "drift_report:no_drift": False,
    }


def test_settings_flow_into_resources(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = Settings.from_env(
        environ={"MLOPS_HOME": str(tmp_path / "h"), "MLOPS_EXECUTOR": "multiprocess"},
        project_dir=tmp_path,
    )
    built = build_definitions(settings)
    registry = built.resources["registry"]
    assert registry.tracking_uri == f"sqlite:///{tmp_path / 'h' / 'mlflow.db'}"
    assert registry.model_name == "breast_cancer_classifier"
    assert built.resources["io_manager"].base_dir == str(tmp_path / "h" / "storage")
    job = built.resolve_job_def(PIPELINE_JOB)
    assert job.executor_def.name == "multiprocess"
    assert (
        build_definitions(settings.with_overrides(executor="in_process"))
        .resolve_job_def(PIPELINE_JOB)
        .executor_def.name
        == "in_process"
    )


def test_explicit_dagster_home_and_tracking_uri_win(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = Settings.from_env(
        environ={
            "MLOPS_HOME": str(tmp_path / "h"),
            "DAGSTER_HOME": str(tmp_path / "dh"),
            "MLFLOW_TRACKING_URI": "http://127.0.0.1:5000",
        },
        project_dir=tmp_path,
    )
    assert settings.dagster_home == tmp_path / "dh"
    assert settings.tracking_uri == "http://127.0.0.1:5000"
    default = Settings.from_env(environ={}, project_dir=tmp_path)
    assert default.home == tmp_path / ".mlops"
    assert default.landing_dir == tmp_path / "data" / "landing"
    assert default.dagster_home == tmp_path / ".mlops" / "dagster"


def test_column_schema_reads_as_constraints() -> None:
    from mlops_assets.assets.metadata import column_schema
    from mlops_assets.quality.schema import demo_schema

    # What validated_dataset's materialization carries as dagster/column_schema.
    columns = {c.name: c for c in column_schema(demo_schema()).schema.columns}
    radius = columns["mean radius"]
    assert radius.constraints.nullable is False
    assert ">= 0" in radius.constraints.other and "finite" in radius.constraints.other
    assert any(c.startswith("<= ") for c in radius.constraints.other), radius.constraints.other
    assert "in {0, 1}" in columns["target"].constraints.other
    assert columns["target"].description == "label"


def test_mlflow_runs_of_asset_selections_are_named_by_their_assets() -> None:
    from types import SimpleNamespace

    from mlops_assets.resources.mlflow import mlflow_run_name

    def run(job: str, *keys: str) -> SimpleNamespace:
        selection = {dg.AssetKey(k) for k in keys} or None
        return SimpleNamespace(job_name=job, asset_selection=selection, run_id="0123456789abcdef")

    assert mlflow_run_name(run(PIPELINE_JOB, "raw_dataset")) == PIPELINE_JOB
    assert mlflow_run_name(run("__ASSET_JOB", "trained_model", "registered_model")) == (
        "registered_model, trained_model (01234567)"
    )
    assert mlflow_run_name(run("__ASSET_JOB", "a", "b", "c", "d")) == "a, b, c +1 (01234567)"
    assert mlflow_run_name(run("__ASSET_JOB")) == "assets 01234567"
