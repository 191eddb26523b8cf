"""`mlops-assets run`: materialize the whole graph headless and summarise what happened."""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg

from mlops_assets.home import prepare_home
from mlops_assets.settings import Settings
from mlops_assets.sources import SOURCE_FILE, SOURCE_ROW


@dataclass
class FileOutcome:
    """One landed file's partition in a run: read, validated, or why not."""

    name: str
    success: bool
    rows_read: int | None = None
    rows_validated: int | None = None
    rows_quarantined: int | None = None
    error: str | None = None

    def render(self) -> str:
        if not self.success:
            return f"{self.name}: FAILED: {self.error}"
        return (
            f"{self.name}: {self.rows_read} rows, validated {self.rows_validated}, "
            f"quarantined {self.rows_quarantined}"
        )


# Files listed one by one in the summary; beyond, the failed ones and a count.
LISTED_FILES = 20
# `mlops-assets run`'s exit code when it registered a model but some landed files failed.
PARTIAL_EXIT_CODE = 3


@dataclass
class RunSummary:
    success: bool
    run_id: str
    rows_read: int | None = None
    rows_validated: int | None = None
    rows_quarantined: int | None = None
    metric: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    model: str | None = None
    version: int | None = None
    champion: bool | None = None
    reason: str | None = None
    errors: list[str] = field(default_factory=list)
    quarantine: str | None = None
    quarantine_sample: list[str] = field(default_factory=list)
    had_data: bool = True
    files: list[FileOutcome] = field(default_factory=list)

    @property
    def failed_files(self) -> list[FileOutcome]:
        return [f for f in self.files if not f.success]

    @property
    def exit_code(self) -> int:
        """0: everything passed; 1: the run failed, nothing new was trained or registered;
        3: a model was trained and registered from the files that passed, but some landed
        files failed, so a script (CI) sees them without reading the summary."""
        if not self.success:
            return 1
        return PARTIAL_EXIT_CODE if self.failed_files else 0

    def _file_lines(self) -> list[str]:
        if len(self.files) <= 1:
            return []
        failed = self.failed_files
        lines = [f"  files: {len(self.files) - len(failed)} passed, {len(failed)} failed"]
        shown = self.files if len(self.files) <= LISTED_FILES else failed[:LISTED_FILES]
        for outcome in shown:
            first, *rest = outcome.render().splitlines()
            lines += [f"    {first}", *(f"      {line}" for line in rest)]
        if len(failed) > len(shown):
            lines.append(f"    ... and {len(failed) - len(shown)} more failed files")
        return lines

    def render(self) -> str:
        if not self.success:
            lines = [f"mlops-assets: run {self.run_id} FAILED"]
            lines += [f"  {line}" for error in self.errors for line in error.splitlines()]
            if self.rows_read is not None:
                lines.append(f"  rows read: {self.rows_read}")
            lines += self._file_lines()
            lines.append(
                "  The previous validated data and the current champion are unchanged."
                if self.had_data
                else "  Nothing was stored or registered: there is no validated data or champion "
                "yet."
            )
            return "\n".join(lines)
        metrics = ", ".join(f"{k}={v:.4f}" for k, v in sorted(self.metrics.items()))
        status = "became champion" if self.champion else "did not become champion"
        quarantined = [
            f"    {line}" for line in self.quarantine_sample if self.rows_quarantined
        ] + ([f"    all of them in {self.quarantine}"] if self.rows_quarantined else [])
        refused = (
            [
                "  Files that failed are not in the training set; their last passing version, "
                "if any, is."
            ]
            if self.failed_files
            else []
        )
        failed = len(self.failed_files)
        outcome = (
            f"succeeded, but {failed} of {len(self.files)} landed files failed"
            if failed
            else "succeeded"
        )
        return "\n".join(
            [
                f"mlops-assets: run {self.run_id} {outcome}",
                f"  rows read {self.rows_read}, validated {self.rows_validated}, "
                f"quarantined {self.rows_quarantined}",
                *quarantined,
                *self._file_lines(),
                *refused,
                f"  best model ({self.metric}): {metrics}",
                f"  registered {self.model} v{self.version}: {status}",
                f"  gate: {self.reason}",
            ]
        )


# In-process results (tests) and execute_job's (the CLI) answer the same questions.
Result = dg.ExecuteInProcessResult | dg.JobExecutionResult


@dataclass
class PipelineRuns:
    """What materializing everything took with several files: a run per file for its
    partitions, then one run for the rest of the graph (None when no file passed)."""

    files: dict[str, Result]
    downstream: Result | None

    @property
    def results(self) -> list[Result]:
        return [*self.files.values(), *([self.downstream] if self.downstream else [])]

    @property
    def success(self) -> bool:
        """A model was trained and registered from the files that passed; files that failed
        are listed in the summary, each with its reasons."""
        return self.downstream is not None and self.downstream.success

    @property
    def run_id(self) -> str:
        return (self.downstream or self.results[-1]).run_id

    @property
    def all_events(self) -> list[Any]:
        return [e for r in self.results for e in r.all_events]

    def get_asset_materialization_events(self) -> list[Any]:
        return [e for r in self.results for e in r.get_asset_materialization_events()]

    def get_asset_check_evaluations(self) -> list[Any]:
        return [e for r in self.results for e in r.get_asset_check_evaluations()]


AnyResult = Result | PipelineRuns


def _metadata(result: "Result", node: str, key: str, asset: str) -> Any:
    for materialization in result.asset_materializations_for_node(node):
        if materialization.asset_key.path[-1] == asset and key in materialization.metadata:
            return materialization.metadata[key].value
    return None


def _failures(result: "Result") -> list[str]:
    from mlops_assets.automation import step_failure_messages

    messages = step_failure_messages(result.all_events)
    return messages or ["the run failed; see the Dagster UI for the event log"]


# Where each asset the summary reads comes from in an in-process result: (node, output).
_OUTPUTS = {
    "trained_model": ("trained_model", "result"),
    "registered_model": ("registered_model", "result"),
}


def file_outcome(name: str, result: "Result") -> FileOutcome:
    outcome = FileOutcome(
        name=name,
        success=not step_failure_in(result, ("raw_dataset", "validation")),
        rows_read=_metadata(result, "raw_dataset", "dagster/row_count", "raw_dataset"),
        rows_validated=_metadata(result, "validation", "dagster/row_count", "validated_dataset"),
        rows_quarantined=_metadata(result, "validation", "rows_quarantined", "validated_dataset"),
    )
    if not outcome.success:
        outcome.error = "\n".join(_failures(result))
    return outcome


def step_failure_in(result: "Result", steps: tuple[str, ...]) -> bool:
    return any(
        e.event_type_value == "STEP_FAILURE" and e.step_key in steps for e in result.all_events
    )


def _quarantine_sample(result: "Result") -> tuple[str | None, list[str]]:
    from mlops_assets.resources.io import read_frame

    path = _metadata(result, "validation", "path", "quarantined_rows")
    if not path:
        return None, []
    rows = read_frame(Path(path)).head(3)
    return path, [
        f"{row[SOURCE_FILE]}:{row[SOURCE_ROW]} column '{row['quarantine_column']}' "
        f"{row['quarantine_rule']}: {row['quarantine_value']}"
        for row in rows.to_dict("records")
    ]


def summarize(result: AnyResult, load: Callable[[str], Any] | None = None) -> RunSummary:
    """`load(asset)` reads a stored asset value; by default the in-process result's outputs."""
    files = result.files if isinstance(result, PipelineRuns) else {}
    main = result.downstream if isinstance(result, PipelineRuns) else result
    if load is None and main is not None:
        load = lambda asset: main.output_for_node(*_OUTPUTS[asset])  # noqa: E731
    summary = RunSummary(success=result.success, run_id=result.run_id)
    if files:
        summary.files = [file_outcome(name, r) for name, r in files.items()]
    elif main is not None:
        key = main.dagster_run.tags.get("dagster/partition", "")
        summary.files = [file_outcome(key, main)]
    passed = [f for f in summary.files if f.success]
    reads = [f.rows_read for f in summary.files if f.rows_read is not None]
    summary.rows_read = sum(reads) if reads else None
    if not result.success:
        if not files:
            summary.errors = _failures(main) if main is not None else []
            return summary
        summary.errors = [f"{f.name}: {f.error}" for f in summary.failed_files]
        if main is None:
            summary.errors.append("no landed file passed validation: nothing to train on")
        elif not main.success:
            summary.errors += _failures(main)
        return summary
    assert main is not None and load is not None
    summary.rows_validated = sum(f.rows_validated or 0 for f in passed)
    summary.rows_quarantined = sum(f.rows_quarantined or 0 for f in passed)
    samples = [_quarantine_sample(r) for r in (files.values() if files else [main])]
    with_rows = [s for s in samples if s[0] and s[1]]
    if summary.rows_quarantined and with_rows:
        summary.quarantine = (
            with_rows[0][0] if len(with_rows) == 1 else str(Path(str(with_rows[0][0])).parent)
        )
        summary.quarantine_sample = [line for _, lines in with_rows for line in lines][:3]
    trained = load("trained_model")
    registered = load("registered_model")
    summary.metric = trained["metric"]
    summary.metrics = trained["holdout_metrics"]
    summary.model = registered["name"]
    summary.version = registered["version"]
    summary.champion = registered["champion"]
    summary.reason = registered["reason"]
    return summary


def pipeline_job(settings: dict[str, Any]) -> dg.JobDefinition:
    """The job `mlops-assets run` executes, for `Settings.as_plain()`; module level so Dagster
    can reconstruct it."""
    from mlops_assets.definitions import PIPELINE_JOB, build_definitions

    return build_definitions(Settings.from_plain(settings)).resolve_job_def(PIPELINE_JOB)


# execute(partition key or None, asset keys or None for all) -> the run's result
Execute = Callable[[str | None, list[dg.AssetKey] | None], Result]


def sync_partitions(instance: dg.DagsterInstance, settings: Settings) -> list[str]:
    """One partition per landed file (or the demo's): adds and retires as the sensor would,
    and returns every partition, all of which a headless run materializes."""
    from mlops_assets.partitions import LANDED_FILES, apply_plan, desired_partitions, membership
    from mlops_assets.sources import landing_files

    names = [path.name for path in landing_files(settings.landing_dir)]
    # Only membership is planned here: every partition is materialized anyway.
    apply_plan(instance, membership(names, instance.get_dynamic_partitions(LANDED_FILES)))
    return desired_partitions(names)


# After a schema change: every file validated again from what raw_dataset stored.
REVALIDATED_ASSETS = ("validated_dataset", "quarantined_rows", "drift_report")


def materialize_all(execute: Execute, keys: list[str], revalidate: bool = False) -> AnyResult:
    """Every partition, then the rest of the graph. One file is one run of the whole graph (as
    the sensor runs it); with several, a file that fails costs only its own run. `revalidate`
    runs validation (not the reading) of every file, then the rest."""
    from mlops_assets.partitions import PARTITIONED_ASSETS

    if len(keys) == 1 and not revalidate:
        return execute(keys[0], None)
    names = REVALIDATED_ASSETS if revalidate else PARTITIONED_ASSETS
    partitioned = [dg.AssetKey(name) for name in names]
    files = {key: execute(key, partitioned) for key in keys}
    if not any(r.success for r in files.values()):
        return PipelineRuns(files, None)
    return PipelineRuns(files, execute(None, [dg.AssetKey(n) for n in DOWNSTREAM_ASSETS]))


RAW = dg.AssetKey("raw_dataset")
DOWNSTREAM_ASSETS = ("trained_model", "registered_model", "model_report", "batch_predictions")


def run_pipeline(
    settings: Settings,
    run_config: dict[str, Any] | None = None,
    log_level: str | None = None,
    revalidate: bool = False,
) -> RunSummary:
    from mlops_assets.definitions import build_definitions
    from mlops_assets.partitions import landed_files

    prepare_home(settings)
    # Progress lines instead of Dagster's event log (unless asked for): the summary reports what
    # failed, once.
    loggers: dict[str, Any] = {"progress": {}}
    if log_level:
        loggers["console"] = {"config": {"log_level": log_level.upper()}}
    config = {"loggers": loggers, **(run_config or {})}
    plain = settings.as_plain()
    job = dg.build_reconstructable_job(
        __name__, pipeline_job.__name__, reconstructable_kwargs={"settings": plain}
    )
    with dg.DagsterInstance.get() as instance:
        had_data = instance.get_latest_materialization_event(dg.AssetKey("trained_model"))
        keys = sync_partitions(instance, settings)
        if revalidate:
            # Only files whose reading passed have rows to validate again.
            read = instance.get_status_by_partition(RAW, keys, landed_files) or {}
            keys = [k for k in keys if read.get(k) == dg.AssetPartitionStatus.MATERIALIZED]

        def execute(partition: str | None, selection: list[dg.AssetKey] | None) -> Result:
            # Not execute_in_process: it keeps every step's output in memory until the run
            # ends (the raw and validated frames beside training: gigabytes at ten million
            # rows). execute_job hands values between steps through the IO manager only.
            with dg.execute_job(
                job,
                instance=instance,
                run_config=config,
                tags={"dagster/partition": partition} if partition else None,
                asset_selection=selection,
                raise_on_error=False,
            ) as result:
                return result

        result = materialize_all(execute, keys, revalidate)
        with build_definitions(settings).get_asset_value_loader(instance) as loader:
            summary = summarize(result, loader.load_asset_value)
    summary.had_data = had_data is not None
    return summary
