"""Sensors and declarative automation, evaluated with Dagster's test APIs."""

import json
import os
import sqlite3
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import dagster as dg
import pandas as pd
import pytest

from mlops_assets.automation import code_version, downstream_condition, failed_assets
from mlops_assets.definitions import PIPELINE_JOB, build_definitions
from mlops_assets.resources.mlflow import ModelRegistry

from .conftest import QUICK_TRAINING, Project, failure_messages

DOWNSTREAM = {
    "validated_dataset",
    "quarantined_rows",
    "trained_model",
    "registered_model",
    "batch_predictions",
    "drift_report",
    "model_report",
}


def _tick(project: Project, cursor: str | None = None) -> Any:
    sensor = project.definitions().get_sensor_def("landing_sensor")
    context = dg.build_sensor_context(instance=project.instance, cursor=cursor)
    return sensor.evaluate_tick(context)


def test_landing_sensor_skips_an_empty_folder(project: Project) -> None:
    result = _tick(project)
    assert not result.run_requests
    assert "holds no CSV or Parquet file" in result.skip_message


def test_landing_sensor_keys_runs_on_content(project: Project, demo_frame: pd.DataFrame) -> None:
    path = project.land("a.csv", demo_frame)
    first = _tick(project)
    [request] = first.run_requests
    assert request.tags["mlops/trigger"] == "landing_sensor"
    assert json.loads(first.cursor)["a.csv"][2]  # content hash kept in the cursor

    # A restarted sensor (no cursor) and a second tick agree on the key: Dagster's run-key
    # de-duplication then launches the work once.
    assert _tick(project).run_requests[0].run_key == request.run_key
    assert _tick(project, first.cursor).run_requests[0].run_key == request.run_key

    # Touching the file changes its mtime, not its content, nor the key.
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert _tick(project, first.cursor).run_requests[0].run_key == request.run_key

    changed = demo_frame.copy()
    changed.loc[0, "mean radius"] += 1
    project.land("a.csv", changed)
    assert _tick(project, first.cursor).run_requests[0].run_key != request.run_key


def test_landing_sensor_skips_what_raw_dataset_already_read(
    project: Project, demo_frame: pd.DataFrame
) -> None:
    project.land("a.csv", demo_frame)
    (project.landing / "broken.csv").write_bytes(b"")
    run_key = _tick(project).run_requests[0].run_key
    result = project.materialize(run_config=QUICK_TRAINING)
    assert result.success, failure_messages(result)

    # raw_dataset moved broken.csv to quarantine; what is left is what it read: nothing to do.
    after = _tick(project)
    assert not after.run_requests
    assert "no new or changed files" in after.skip_message
    assert run_key not in after.skip_message


def _requested(project: Project, cursor: Any = None) -> tuple[set[str], Any]:
    result = dg.evaluate_automation_conditions(
        defs=project.definitions(), instance=project.instance, cursor=cursor
    )
    requested = {
        key.to_user_string()
        for key in project.definitions().resolve_asset_graph().get_all_asset_keys()
        if result.get_num_requested(key)
    }
    return requested, result.cursor


def _materialize_raw(project: Project) -> dg.ExecuteInProcessResult:
    defs = project.definitions()
    job = defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection={dg.AssetKey("raw_dataset")}
    )
    return job.execute_in_process(instance=project.instance, raise_on_error=False)


def test_downstream_follows_changed_data_only(project: Project, demo_frame: pd.DataFrame) -> None:
    project.land("a.csv", demo_frame)
    assert project.materialize(run_config=QUICK_TRAINING).success
    requested, cursor = _requested(project)
    assert requested == set()

    # raw_dataset re-read with identical bytes: same data version, nothing downstream.
    assert _materialize_raw(project).success
    requested, cursor = _requested(project, cursor)
    assert requested == set()

    # New data: everything downstream is requested, in one evaluation.
    changed = demo_frame.copy()
    changed.loc[0, "mean radius"] += 1
    project.land("a.csv", changed)
    assert _materialize_raw(project).success
    requested, cursor = _requested(project, cursor)
    assert requested == DOWNSTREAM


def test_failed_blocking_check_holds_training_back(
    project: Project, demo_frame: pd.DataFrame
) -> None:
    project.land("a.csv", demo_frame)
    assert project.materialize(run_config=QUICK_TRAINING).success
    champion = project.champion_version()
    _, cursor = _requested(project)

    project.land("a.csv", demo_frame.drop(columns=["mean radius"]))
    assert _materialize_raw(project).success
    requested, cursor = _requested(project, cursor)
    assert requested == DOWNSTREAM  # validation must run to find out

    failed = project.materialize(run_config=QUICK_TRAINING)  # what automation would launch
    assert not failed.success
    requested, cursor = _requested(project, cursor)
    assert requested == set()
    requested, cursor = _requested(project, cursor)
    assert requested == set()  # and it stays that way on later ticks
    assert project.champion_version() == champion


def test_policy_is_applied_to_every_asset(project: Project) -> None:
    graph = project.definitions().resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.code_version and len(node.code_version) == 12
        assert node.owners == ["team:mlops"]
        assert node.description
        if key.to_user_string() == "raw_dataset":
            assert node.automation_condition is None
        else:
            assert node.automation_condition == downstream_condition()
    assert code_version(["gate.py"]) != code_version(["sources.py"])
    sensors = {s.name: s for s in project.definitions().sensors}
    assert set(sensors) == {
        "landing_sensor",
        "scoring_sensor",
        "automation",
        "run_failure_recorder",
    }
    assert all(s.default_status == dg.DefaultSensorStatus.RUNNING for s in sensors.values())


def test_transient_failure_is_retried(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    original = ModelRegistry.register

    def flaky(self: ModelRegistry, *args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise sqlite3.OperationalError("database is locked")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ModelRegistry, "register", flaky)
    result = project.materialize(run_config=QUICK_TRAINING)
    assert result.success, failure_messages(result)
    retries = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert [e.step_key for e in retries] == ["registered_model"]
    assert project.champion_version() == 1


def test_data_quality_failure_is_not_retried(project: Project, demo_frame: pd.DataFrame) -> None:
    project.land("a.csv", demo_frame[demo_frame["target"] == 0])
    result = project.materialize()
    assert not result.success
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]


class _Hook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_run_failure_recorder_observes_and_calls_the_webhook(
    project: Project, demo_frame: pd.DataFrame
) -> None:
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/hook"
        project.settings = project.settings.with_overrides(failure_webhook=url)
        project.land("a.csv", demo_frame.assign(extra=1))
        failed = project.materialize()
        assert not failed.success
        run = project.instance.get_run_by_id(failed.run_id)
        [entry] = project.instance.all_logs(failed.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
        failure = entry.dagster_event
        assert failure is not None
        context = dg.build_run_status_sensor_context(
            sensor_name="run_failure_recorder",
            dagster_instance=project.instance,
            dagster_run=run,
            dagster_event=failure,
        ).for_run_failure()
        sensor = build_definitions(project.settings).get_sensor_def("run_failure_recorder")
        sensor(context)  # type: ignore[operator]
    finally:
        server.shutdown()
    [payload] = _Hook.received
    assert payload["run_id"] == failed.run_id and payload["steps"] == ["validation"]
    assert "a.csv: column 'extra': column_in_schema" in payload["error"]
    records = project.instance.fetch_observations(dg.AssetKey("validated_dataset"), limit=1)
    [record] = records.records
    metadata = record.asset_observation.metadata  # type: ignore[union-attr]
    assert metadata["failed_run_id"].value == failed.run_id
    assert "column_in_schema" in str(metadata["failure"].value)


def test_failed_steps_map_to_assets() -> None:
    assert failed_assets(["validation", "trained_model"]) == [
        dg.AssetKey("validated_dataset"),
        dg.AssetKey("quarantined_rows"),
        dg.AssetKey("trained_model"),
    ]


def test_pipeline_job_exists_for_the_sensor(project: Project) -> None:
    sensor = project.definitions().get_sensor_def("landing_sensor")
    assert sensor.job_name == PIPELINE_JOB
