"""Sensors and declarative automation, evaluated with Dagster's test APIs."""

import hashlib
import json
import os
import sqlite3
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import dagster as dg
import pandas as pd
import pytest

from mlops_assets.automation import (
    code_version,
    downstream_condition,
    failed_assets,
    training_condition,
)
from mlops_assets.definitions import PIPELINE_JOB, build_definitions
from mlops_assets.partitions import LANDED_FILES, landed_files
from mlops_assets.resources.mlflow import ModelRegistry
from mlops_assets.sources import DEMO_SOURCE, SETTLE_SECONDS, still_being_written

from .conftest import QUICK_TRAINING, Project, failure_messages
from .sensors import tick_landing_sensor

FILE_ASSETS = {"validated_dataset", "quarantined_rows", "drift_report"}
MODEL_ASSETS = {"trained_model", "registered_model", "batch_predictions", "model_report"}


def _tick(project: Project, cursor: str | None = None) -> Any:
    return tick_landing_sensor(project.definitions(), project.instance, cursor)


def _partitions(project: Project) -> list[str]:
    return sorted(project.instance.get_dynamic_partitions(LANDED_FILES))


def test_landing_sensor_keeps_the_demo_partition_while_the_folder_is_empty(
    project: Project,
) -> None:
    first = _tick(project)
    assert not first.run_requests  # the demo is materialized on request, not by the sensor
    assert _partitions(project) == [DEMO_SOURCE]
    assert "added the demo data's partition" in first.skip_message
    second = _tick(project, first.cursor)
    assert not second.run_requests
    assert "no new, changed or removed files" in second.skip_message


def test_landing_sensor_adds_refreshes_and_retires_partitions(
    project: Project, demo_frame: pd.DataFrame
) -> None:
    cursor = _tick(project).cursor
    path = project.land("a.csv", demo_frame)
    first = _tick(project, cursor)
    # One new file: one run of the whole graph for its partition; the demo's is retired.
    [request] = first.run_requests
    assert request.partition_key == "a.csv" and request.asset_selection is None
    assert request.tags["mlops/trigger"] == "landing_sensor"
    assert _partitions(project) == ["a.csv"]
    assert json.loads(first.cursor)["a.csv"][2]  # content hash kept in the cursor

    # Touching the file changes its mtime, not its content: nothing to do.
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    touched = _tick(project, first.cursor)
    assert not touched.run_requests

    # New bytes: the partition is materialized again, keyed on the content.
    changed = demo_frame.copy()
    changed.loc[0, "mean radius"] += 1
    project.land("a.csv", changed)
    [again] = _tick(project, touched.cursor).run_requests
    assert again.partition_key == "a.csv" and again.run_key != request.run_key
    # A restarted sensor (no cursor) asks for the same run: Dagster's run-key de-duplication
    # launches it once.
    [restarted] = _tick(project).run_requests
    assert restarted.run_key == again.run_key

    # A second file, then the first leaves: its partition is retired and training re-runs.
    project.land("b.csv", demo_frame.iloc[:300])
    added = _tick(project, _tick(project).cursor)
    assert [r.partition_key for r in added.run_requests] == []  # b.csv requested just before
    path.unlink()
    retired = _tick(project, added.cursor)
    assert _partitions(project) == ["b.csv"]
    [retrain] = retired.run_requests
    assert retrain.partition_key is None
    assert {k.to_user_string() for k in retrain.asset_selection or []} == {
        "trained_model",
        "registered_model",
        "model_report",
    }


def test_landing_sensor_waits_for_a_file_still_being_written(
    project: Project, demo_frame: pd.DataFrame
) -> None:
    cursor = _tick(project).cursor
    whole = demo_frame.to_csv(index=False).encode()
    # Half a CSV, cut mid-line, as a copy in progress leaves it: no partition, no run.
    path = project.landing / "slow.csv"
    path.write_bytes(whole[: len(whole) // 2])
    waiting = _tick(project, cursor)
    assert not waiting.run_requests
    assert "waiting for 1 file(s) still being written (slow.csv)" in waiting.skip_message
    assert _partitions(project) == [DEMO_SOURCE]
    # Whole: one run, for all of its rows.
    path.write_bytes(whole)
    [request] = _tick(project, waiting.cursor).run_requests
    assert request.partition_key == "slow.csv"
    assert request.run_key.startswith(f"slow.csv@{hashlib.sha256(whole).hexdigest()[:16]}")
    cursor = _tick(project, waiting.cursor).cursor

    # Rewritten in place: the partition stays on its last whole version until the new one is.
    path.write_bytes(whole[:100])
    rewriting = _tick(project, cursor)
    assert not rewriting.run_requests and _partitions(project) == ["slow.csv"]
    path.write_bytes(whole)
    assert not _tick(project, rewriting.cursor).run_requests  # the same bytes as before

    # A Parquet file is whole when it ends with its magic bytes.
    parquet = project.landing / "slow.parquet"
    demo_frame.to_parquet(parquet)
    payload = parquet.read_bytes()
    parquet.write_bytes(payload[:-10])
    assert still_being_written(parquet)
    parquet.write_bytes(payload)
    assert not still_being_written(parquet)

    # A file left unfinished for longer than SETTLE_SECONDS is read as it is, and fails there.
    stale = time.time() - SETTLE_SECONDS - 1
    os.utime(parquet, (stale, stale))
    parquet.write_bytes(payload[:-10])
    os.utime(parquet, (stale, stale))
    assert not still_being_written(parquet)


def test_scoring_sensor_waits_for_a_file_still_being_written(
    project: Project, demo_frame: pd.DataFrame
) -> None:
    defs = project.definitions()
    sensor = defs.get_sensor_def("scoring_sensor")

    def tick(cursor: str | None) -> Any:
        context = dg.build_sensor_context(
            instance=project.instance, cursor=cursor, definitions=defs
        )
        return sensor.evaluate_tick(context)

    whole = demo_frame.drop(columns=["target"]).head(40).to_csv(index=False).encode()
    path = project.settings.scoring_dir / "today.csv"
    path.write_bytes(whole[: len(whole) // 2])
    # batch_predictions reads the whole folder when it runs: no run while a file is half there.
    waiting = tick(None)
    assert not waiting.run_requests
    assert "waiting for 1 file(s) still being written (today.csv)" in waiting.skip_message
    path.write_bytes(whole)
    [request] = tick(waiting.cursor).run_requests
    assert request.asset_selection == [dg.AssetKey("batch_predictions")]


def test_twenty_files_landed_together_are_twenty_file_runs_and_one_retraining(
    project: Project, demo_frame: pd.DataFrame
) -> None:
    project.land("base.csv", demo_frame)
    assert project.materialize(run_config=QUICK_TRAINING).success
    cursor = _tick(project).cursor
    _, automation = _requested(project)
    for i in range(20):
        batch = demo_frame.sample(n=60, random_state=i).copy()
        batch["mean radius"] += 0.001 * (i + 1)  # new rows, not copies of base.csv's
        project.land(f"batch_{i:02}.csv", batch)
    tick = _tick(project, cursor)
    assert len(tick.run_requests) == 20
    partitioned = {"raw_dataset", "validated_dataset", "quarantined_rows", "drift_report"}
    for request in tick.run_requests:
        assert {k.to_user_string() for k in request.asset_selection} == partitioned
    job = project.definitions().resolve_job_def(PIPELINE_JOB)
    for request in tick.run_requests:
        result = job.execute_in_process(
            instance=project.instance,
            partition_key=request.partition_key,
            asset_selection=request.asset_selection,
        )
        assert result.success
    # Automation sees twenty new files and asks for training once.
    result = dg.evaluate_automation_conditions(
        defs=project.definitions(), instance=project.instance, cursor=automation
    )
    assert result.get_num_requested(dg.AssetKey("trained_model")) == 1
    assert result.get_num_requested(dg.AssetKey("validated_dataset")) == 0


def test_a_failed_partition_does_not_hold_training_back(
    project: Project, demo_frame: pd.DataFrame
) -> None:
    halves = demo_frame.iloc[:300], demo_frame.iloc[300:]
    project.land("a.csv", halves[0])
    project.land("b.csv", halves[1])
    assert project.materialize(run_config=QUICK_TRAINING).success
    _, cursor = _requested(project)
    # The same graph with Dagster's own eager() condition on training, for comparison.
    waiting = _with_training_condition(project.definitions(), downstream_condition())
    _, waiting_cursor = _requested(project, defs=waiting)

    job = project.definitions().resolve_job_def(PIPELINE_JOB)
    partitioned = [
        dg.AssetKey(k)
        for k in ("raw_dataset", "validated_dataset", "quarantined_rows", "drift_report")
    ]
    project.instance.add_dynamic_partitions(LANDED_FILES, ["bad.csv", "c.csv"])
    project.land("bad.csv", halves[1].drop(columns=["mean radius"]))
    fresh = halves[0].copy()
    fresh["mean radius"] += 0.01
    project.land("c.csv", fresh)
    for key in ("bad.csv", "c.csv"):
        job.execute_in_process(
            instance=project.instance,
            partition_key=key,
            asset_selection=partitioned,
            raise_on_error=False,
        )
    status = project.instance.get_status_by_partition(
        dg.AssetKey("validated_dataset"), ["bad.csv", "c.csv"], landed_files
    )
    assert status["bad.csv"] == dg.AssetPartitionStatus.FAILED
    # eager() waits for bad.csv's validated partition, missing, forever; ours trains on the
    # files that passed, once.
    requested, waiting_cursor = _requested(project, waiting_cursor, defs=waiting)
    assert "trained_model" not in requested
    requested, cursor = _requested(project, cursor)
    assert "trained_model" in requested
    requested, cursor = _requested(project, cursor)
    assert "trained_model" not in requested


def _with_training_condition(
    defs: dg.Definitions, condition: dg.AutomationCondition
) -> dg.Definitions:
    def replace(spec: dg.AssetSpec) -> dg.AssetSpec:
        if spec.key != dg.AssetKey("trained_model"):
            return spec
        return spec.replace_attributes(automation_condition=condition)

    assets = [a.map_asset_specs(replace) for a in defs.assets or []]  # type: ignore[union-attr]
    return dg.Definitions(assets=assets, resources=defs.resources)


def _requested(
    project: Project, cursor: Any = None, defs: dg.Definitions | None = None
) -> tuple[set[str], Any]:
    defs = defs or project.definitions()
    result = dg.evaluate_automation_conditions(defs=defs, instance=project.instance, cursor=cursor)
    requested = {
        key.to_user_string()
        for key in defs.resolve_asset_graph().get_all_asset_keys()
        if result.get_num_requested(key)
    }
    return requested, result.cursor


def _materialize_raw(project: Project, file: str = "a.csv") -> dg.ExecuteInProcessResult:
    job = project.definitions().resolve_job_def(PIPELINE_JOB)
    return job.execute_in_process(
        instance=project.instance,
        partition_key=file,
        asset_selection=[dg.AssetKey("raw_dataset")],
        raise_on_error=False,
    )


def test_downstream_follows_changed_data_only(project: Project, demo_frame: pd.DataFrame) -> None:
    project.land("a.csv", demo_frame)
    assert project.materialize(run_config=QUICK_TRAINING).success
    requested, cursor = _requested(project)
    assert requested == set()

    # raw_dataset re-read with identical bytes: same data version, nothing downstream.
    assert _materialize_raw(project).success
    requested, cursor = _requested(project, cursor)
    assert requested == set()

    # New data: the file's partitions first, then the model and what follows it (a run holds
    # one partition of the file's assets or the unpartitioned rest).
    changed = demo_frame.copy()
    changed.loc[0, "mean radius"] += 1
    project.land("a.csv", changed)
    assert _materialize_raw(project).success
    requested, cursor = _requested(project, cursor)
    assert requested == FILE_ASSETS
    job = project.definitions().resolve_job_def(PIPELINE_JOB)
    selection = [dg.AssetKey(name) for name in FILE_ASSETS]
    assert job.execute_in_process(
        instance=project.instance, partition_key="a.csv", asset_selection=selection
    ).success
    requested, cursor = _requested(project, cursor)
    assert requested == MODEL_ASSETS


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
    assert requested == FILE_ASSETS  # validation must run to find out

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
        elif key.to_user_string() == "trained_model":
            assert node.automation_condition == training_condition()
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


def test_a_thousand_files_are_partitions_on_the_sqlite_default(project: Project) -> None:
    """Dagster's SQLite storage binds one variable per partition key (dagster-io/dagster
    #16260): the sensor adds and retires them in chunks, and a thousand files just work."""
    for i in range(1001):
        (project.landing / f"f{i:04}.csv").write_text(f"mean radius,target\n{i},0\n")
    tick = _tick(project)
    adds = [
        r for r in tick.dynamic_partitions_requests if isinstance(r, dg.AddDynamicPartitionsRequest)
    ]
    assert [len(r.partition_keys) for r in adds] == [500, 500, 1]
    assert len(_partitions(project)) == 1001
    assert len(tick.run_requests) == 1001
    assert project.instance.has_dynamic_partition(LANDED_FILES, "f1000.csv")

    for path in sorted(project.landing.iterdir())[:501]:
        path.unlink()
    retired = _tick(project, tick.cursor)
    assert len(_partitions(project)) == 500
    [retrain] = retired.run_requests
    assert retrain.partition_key is None
