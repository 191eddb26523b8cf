"""`mlops-assets run`: materialize the whole graph headless and summarise what happened."""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from mlops_assets.home import prepare_home
from mlops_assets.settings import Settings
from mlops_assets.sources import SOURCE_FILE, SOURCE_ROW


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

    def render(self) -> str:
        if not self.success:
            lines = [f"mlops-assets: run {self.run_id} FAILED"]
            lines += [f"  {line}" for error in self.errors for line in error.splitlines()]
            if self.rows_read is not None:
                lines.append(f"  rows read: {self.rows_read}")
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
        return "\n".join(
            [
                f"mlops-assets: run {self.run_id} succeeded",
                f"  rows read {self.rows_read}, validated {self.rows_validated}, "
                f"quarantined {self.rows_quarantined}",
                *quarantined,
                f"  best model ({self.metric}): {metrics}",
                f"  registered {self.model} v{self.version}: {status}",
                f"  gate: {self.reason}",
            ]
        )


# In-process results (tests) and execute_job's (the CLI) answer the same questions.
Result = dg.ExecuteInProcessResult | dg.JobExecutionResult


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
    "quarantined_rows": ("validation", "quarantined_rows"),
    "trained_model": ("trained_model", "result"),
    "registered_model": ("registered_model", "result"),
}


def summarize(result: Result, load: Callable[[str], Any] | None = None) -> RunSummary:
    """`load(asset)` reads a stored asset value; by default the in-process result's outputs."""
    if load is None:
        load = lambda asset: result.output_for_node(*_OUTPUTS[asset])  # noqa: E731
    summary = RunSummary(success=result.success, run_id=result.run_id)
    summary.rows_read = _metadata(result, "raw_dataset", "dagster/row_count", "raw_dataset")
    if not result.success:
        summary.errors = _failures(result)
        return summary
    summary.rows_validated = _metadata(
        result, "validation", "dagster/row_count", "validated_dataset"
    )
    summary.rows_quarantined = _metadata(
        result, "validation", "rows_quarantined", "validated_dataset"
    )
    summary.quarantine = _metadata(result, "validation", "path", "quarantined_rows")
    if summary.rows_quarantined:
        rows = load("quarantined_rows").head(3)
        summary.quarantine_sample = [
            f"{row[SOURCE_FILE]}:{row[SOURCE_ROW]} column '{row['quarantine_column']}' "
            f"{row['quarantine_rule']}: {row['quarantine_value']}"
            for row in rows.to_dict("records")
        ]
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


def run_pipeline(
    settings: Settings, run_config: dict[str, Any] | None = None, log_level: str | None = None
) -> RunSummary:
    from mlops_assets.definitions import build_definitions

    prepare_home(settings)
    # Progress lines instead of Dagster's event log (unless asked for): the summary reports what
    # failed, once.
    loggers: dict[str, Any] = {"progress": {}}
    if log_level:
        loggers["console"] = {"config": {"log_level": log_level.upper()}}
    config = {"loggers": loggers, **(run_config or {})}
    plain = settings.as_plain()
    with dg.DagsterInstance.get() as instance:
        had_data = instance.get_latest_materialization_event(dg.AssetKey("validated_dataset"))
        # Not execute_in_process: it keeps every step's output in memory until the run ends
        # (the raw and validated frames beside training: gigabytes at ten million rows).
        # execute_job hands values between steps through the IO manager only.
        with (
            dg.execute_job(
                dg.build_reconstructable_job(
                    __name__, pipeline_job.__name__, reconstructable_kwargs={"settings": plain}
                ),
                instance=instance,
                run_config=config,
                raise_on_error=False,
            ) as result,
            build_definitions(settings).get_asset_value_loader(instance) as loader,
        ):
            summary = summarize(result, loader.load_asset_value)
    summary.had_data = had_data is not None
    return summary
