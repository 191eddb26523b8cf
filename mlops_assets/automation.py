"""Policy in one place: what re-materializes when, how failures are retried and recorded.

- `landing_sensor` keeps one partition per landed file: it adds the partition of a new file,
  retires the partition of a file that left, and requests a run for each new or changed file.
  One file is one run of the whole graph; several files are one run per file for their
  partitions, and automation then retrains once when they are all done.
- Downstream assets are eager, held back by failed blocking checks, and re-run when their code
  changes (code versions are hashes of the modules that hold their logic). trained_model does
  not wait for files whose partition failed: it trains on the files that passed.
- Transient failures are retried by a RetryPolicy; data-quality failures raise
  `Failure(allow_retries=False)` and are never retried.
- `run_failure_recorder` writes every failed run to its log, to an asset observation on the
  assets that failed, and to a webhook when MLOPS_FAILURE_WEBHOOK is set.
"""

import hashlib
import json
import time
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import dagster as dg

from mlops_assets.settings import Settings

PACKAGE = Path(__file__).parent
OWNER = "team:mlops"
RAW = dg.AssetKey("raw_dataset")
TRAINED = dg.AssetKey("trained_model")
# What is re-run when files only left the folder: training and what follows it in one run.
RETRAIN = [TRAINED, dg.AssetKey("registered_model"), dg.AssetKey("model_report")]
PREDICTIONS = dg.AssetKey("batch_predictions")

TRANSIENT_RETRY = dg.RetryPolicy(max_retries=3, delay=1, backoff=dg.Backoff.EXPONENTIAL)

# Which source files hold each asset's logic: a change to them is a new code version.
_CODE = {
    "raw_dataset": ("sources.py", "assets/data.py"),
    "validated_dataset": ("sources.py", "quality", "assets/data.py"),
    "quarantined_rows": ("sources.py", "quality", "assets/data.py"),
    "trained_model": ("training", "assets/model.py"),
    "registered_model": ("gate.py", "promotion.py", "training/evaluate.py", "assets/model.py"),
    "batch_predictions": ("assets/serving.py", "quality"),
    "drift_report": ("assets/monitoring.py", "drift.py"),
    "model_report": ("assets/report.py", "reporting.py"),
}
# Steps whose name differs from the asset they materialize.
_STEP_ASSETS = {"validation": ("validated_dataset", "quarantined_rows")}


def code_version(parts: Iterable[str]) -> str:
    digest = hashlib.sha256()
    for part in parts:
        path = PACKAGE / part
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for file in files:
            digest.update(file.relative_to(PACKAGE).as_posix().encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()[:12]


def code_versions() -> dict[str, str | None]:
    return {name: code_version(parts) for name, parts in _CODE.items()}


def _eager_on_change(wait_for_missing: bool = True) -> dg.AutomationCondition:
    deps_changed = dg.AutomationCondition.any_deps_match(
        (
            dg.AutomationCondition.data_version_changed()
            # an update made by a run that also targets this asset is already handled by it
            & ~dg.AutomationCondition.executed_with_root_target()
        ).with_label("data_version_changed_without_root")
        | dg.AutomationCondition.will_be_requested()
    ).with_label("any_deps_data_changed")
    eager: Any = dg.AutomationCondition.eager()
    if not wait_for_missing:
        eager = eager.without(~dg.AutomationCondition.any_deps_missing())
    return eager.replace("any_deps_updated", deps_changed)


def downstream_condition() -> dg.AutomationCondition:
    """eager(), but triggered by a parent's *data version* changing rather than by any new
    materialization: re-reading identical files, or re-running an asset whose output did not
    change, retrains nothing."""
    return (
        _eager_on_change() | dg.AutomationCondition.code_version_changed()
    ) & dg.AutomationCondition.all_deps_blocking_checks_passed()


def training_condition() -> dg.AutomationCondition:
    """downstream_condition() for the asset that joins the files. eager() waits while any
    parent partition is missing (dagster-io/dagster #34094): a file whose validation failed
    would hold training back for every other file. Here a failed or never-passing partition
    is simply not part of the training set (its blocking checks failed, so nothing of it was
    stored); training still waits while any file's run is in progress, so files landed
    together retrain once."""
    return _eager_on_change(wait_for_missing=False) | dg.AutomationCondition.code_version_changed()


def apply_policy(assets: Sequence[dg.AssetsDefinition]) -> list[dg.AssetsDefinition]:
    def policy(spec: dg.AssetSpec) -> dg.AssetSpec:
        name = spec.key.to_user_string()
        return spec.replace_attributes(
            code_version=code_version(_CODE[name]),
            automation_condition=None
            if spec.key == RAW
            else training_condition()
            if spec.key == TRAINED
            else downstream_condition(),
            owners=[OWNER],
        )

    return [asset.map_asset_specs(policy) for asset in assets]


def latest_data_version(instance: dg.DagsterInstance, key: dg.AssetKey) -> str | None:
    event = instance.get_latest_materialization_event(key)
    materialization = event.asset_materialization if event else None
    return (materialization.tags or {}).get("dagster/data_version") if materialization else None


def folder_decision(
    sensor: str,
    scanned: dict[str, tuple[int, int, str]],
    consumed_version: str | None,
    folder: Path,
    consumer: str,
) -> dg.RunRequest | dg.SkipReason:
    """`consumed_version` is the data version of the asset that reads the folder; it starts with
    the same content fingerprint when that asset last read exactly these files."""
    from mlops_assets.sources import fingerprint

    if not scanned:
        return dg.SkipReason(f"{folder} holds no CSV or Parquet file")
    current = fingerprint([(name, entry[2]) for name, entry in scanned.items()])
    if consumed_version is not None and consumed_version.split("@")[0] == current:
        return dg.SkipReason(
            f"no new or changed files: the {len(scanned)} file(s) in {folder} are what "
            f"{consumer} last read (fingerprint {current})"
        )
    return dg.RunRequest(
        run_key=current,
        tags={"mlops/trigger": sensor, "mlops/fingerprint": current},
    )


def waiting_for(held: list[str]) -> str:
    from mlops_assets.sources import SETTLE_SECONDS

    return (
        f"waiting for {len(held)} file(s) still being written ({', '.join(held[:5])}"
        f"{', ...' if len(held) > 5 else ''}): modified in the last {SETTLE_SECONDS} s and "
        "not yet ending as a whole file of their format"
    )


def _folder_sensor(
    name: str, folder: Path, consumer: dg.AssetKey, interval: int, description: str, **target: Any
) -> dg.SensorDefinition:
    @dg.sensor(
        name=name,
        minimum_interval_seconds=interval,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=description,
        **target,
    )
    def folder_sensor(context: dg.SensorEvaluationContext) -> Any:
        from mlops_assets.sources import scan_landing

        known = {k: tuple(v) for k, v in json.loads(context.cursor or "{}").items()}
        held: list[str] = []
        scanned = scan_landing(folder, known, held)
        context.update_cursor(json.dumps(scanned, sort_keys=True))
        if held:
            # The consumer reads the whole folder when it runs, the half-written file with it.
            return dg.SkipReason(waiting_for(held))
        consumed = latest_data_version(context.instance, consumer)
        return folder_decision(name, scanned, consumed, folder, consumer.to_user_string())

    return folder_sensor


def landing_requests(
    plan: Any, scanned: dict[str, tuple[int, int, str]], new_partitions: set[str]
) -> list[dg.RunRequest]:
    """One new or changed file: one run of the whole graph for its partition (the shortest way
    from a landed file to a champion). Several: one run per file for its partitions, and
    automation retrains once they are all done. Only files that left: a retraining run."""
    from mlops_assets.partitions import PARTITIONED_ASSETS

    def run_key(name: str) -> str:
        key = f"{name}@{scanned[name][2][:16]}"
        # A file landed again after it left is a new partition: it must run again even with
        # the bytes it had before.
        return f"{key}+{time.time_ns()}" if name in new_partitions else key

    tags = {"mlops/trigger": "landing_sensor"}
    if len(plan.refresh) == 1:
        [name] = plan.refresh
        return [dg.RunRequest(run_key=run_key(name), partition_key=name, tags=tags)]
    if plan.refresh:
        selection = [dg.AssetKey(name) for name in PARTITIONED_ASSETS]
        return [
            dg.RunRequest(
                run_key=run_key(name), partition_key=name, asset_selection=selection, tags=tags
            )
            for name in plan.refresh
        ]
    if plan.retire and scanned:
        from mlops_assets.sources import fingerprint

        current = fingerprint([(name, entry[2]) for name, entry in scanned.items()])
        return [dg.RunRequest(run_key=f"retired:{current}", asset_selection=RETRAIN, tags=tags)]
    return []


def _partition_changes(plan: Any) -> str:
    from mlops_assets.sources import DEMO_SOURCE

    said = []
    if plan.add:
        demo = plan.add == [DEMO_SOURCE]
        said.append(
            f"added the demo data's partition {DEMO_SOURCE} (the landing folder is empty; "
            "materialize it from the UI or with `mlops-assets run`)"
            if demo
            else f"added {len(plan.add)} partition(s)"
        )
    if plan.retire:
        said.append(f"retired {len(plan.retire)} partition(s) of files that left")
    return "; ".join(said) + ": no run to request"


def build_landing_sensor(settings: Settings, job: Any) -> dg.SensorDefinition:
    folder = settings.landing_dir

    @dg.sensor(
        name="landing_sensor",
        minimum_interval_seconds=settings.sensor_interval,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Keeps one partition per file in {folder}: adds new files, retires files "
        "that left, and requests runs for new or changed files.",
        job=job,
    )
    def landing_sensor(context: dg.SensorEvaluationContext) -> Any:
        from mlops_assets.partitions import LANDED_FILES, partition_requests, plan_partitions
        from mlops_assets.sources import scan_landing

        previous = (
            {k: tuple(v) for k, v in json.loads(context.cursor).items()} if context.cursor else None
        )
        held: list[str] = []
        scanned = scan_landing(folder, previous or {}, held)
        existing = context.instance.get_dynamic_partitions(LANDED_FILES)
        plan = plan_partitions(scanned, previous, existing)
        cursor = json.dumps(scanned, sort_keys=True)
        waiting = waiting_for(held) if held else ""
        if plan.empty:
            return dg.SensorResult(
                skip_reason=dg.SkipReason(
                    waiting
                    or f"no new, changed or removed files in {folder} ({len(scanned)} file(s))"
                ),
                cursor=cursor,
            )
        if waiting:
            context.log.info(waiting)
        requests = landing_requests(plan, scanned, set(plan.add))
        # A tick that only adds or retires partitions says so, rather than skipping in silence.
        said = None if requests else dg.SkipReason(_partition_changes(plan))
        return dg.SensorResult(
            run_requests=requests,
            dynamic_partitions_requests=partition_requests(plan),  # type: ignore[arg-type]
            skip_reason=said,
            cursor=cursor,
        )

    return landing_sensor


def build_scoring_sensor(settings: Settings) -> dg.SensorDefinition:
    return _folder_sensor(
        "scoring_sensor",
        settings.scoring_dir,
        PREDICTIONS,
        settings.sensor_interval,
        f"Requests batch_predictions when files in {settings.scoring_dir} change content.",
        asset_selection=[PREDICTIONS],
    )


def build_automation_sensor(settings: Settings) -> dg.AutomationConditionSensorDefinition:
    return dg.AutomationConditionSensorDefinition(
        "automation",
        target=dg.AssetSelection.all(),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=settings.automation_interval,
        description="Evaluates the eager/code-version conditions of the downstream assets.",
    )


def step_failure_messages(events: Iterable[Any]) -> list[str]:
    """'step: what went wrong' for each step failure: the Failure's description, which names
    file, column and rule, else the exception's message."""
    messages = []
    for event in events:
        if event.event_type_value != "STEP_FAILURE":
            continue
        data = event.step_failure_data
        user = data.user_failure_data if data else None
        if user is not None and user.description:
            messages.append(f"{event.step_key}: {user.description}")
        elif data is not None and data.error is not None:
            messages.append(f"{event.step_key}: {data.error.message.strip()}")
    return messages


def failed_assets(step_keys: Iterable[str]) -> list[dg.AssetKey]:
    keys: list[dg.AssetKey] = []
    for step in step_keys:
        keys += [dg.AssetKey(name) for name in _STEP_ASSETS.get(step, (step,))]
    return keys


def post_webhook(url: str, payload: dict[str, Any], timeout: float = 5.0) -> None:
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout):
        pass


def build_failure_sensor(settings: Settings) -> dg.SensorDefinition:
    webhook = settings.failure_webhook

    @dg.run_failure_sensor(
        name="run_failure_recorder",
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=settings.sensor_interval,
        description="Records failed runs: sensor log, an observation on the failed assets, and "
        "MLOPS_FAILURE_WEBHOOK if set.",
    )
    def run_failure_recorder(context: dg.RunFailureSensorContext) -> None:
        run = context.dagster_run
        steps = [e.step_key for e in context.get_step_failure_events() if e.step_key]
        message = context.failure_event.message or "run failed"
        summary = "\n".join(step_failure_messages(context.get_step_failure_events())) or message
        context.log.error(f"run {run.run_id} ({run.job_name}) failed:\n{summary}")
        from mlops_assets.partitions import PARTITIONED_ASSETS

        partition = run.tags.get("dagster/partition")
        for key in failed_assets(steps):
            context.instance.report_runless_asset_event(
                dg.AssetObservation(
                    asset_key=key,
                    # On the failed file's partition, where the partition bar shows it.
                    partition=partition if key.to_user_string() in PARTITIONED_ASSETS else None,
                    metadata={
                        "failed_run_id": run.run_id,
                        "failure": dg.MetadataValue.md(f"```\n{summary}\n```"),
                    },
                )
            )
        if webhook:
            try:
                post_webhook(
                    webhook,
                    {"run_id": run.run_id, "job": run.job_name, "steps": steps, "error": summary},
                )
            except OSError as exc:
                context.log.warning(f"failure webhook {webhook} unreachable: {exc}")

    return run_failure_recorder
