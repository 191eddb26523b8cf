"""`mlops-assets run`: materialize the whole graph headless and summarise what happened."""

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


def _metadata(result: dg.ExecuteInProcessResult, node: str, key: str, asset: str) -> Any:
    for materialization in result.asset_materializations_for_node(node):
        if materialization.asset_key.path[-1] == asset and key in materialization.metadata:
            return materialization.metadata[key].value
    return None


def _failures(result: dg.ExecuteInProcessResult) -> list[str]:
    from mlops_assets.automation import step_failure_messages

    messages = step_failure_messages(result.all_events)
    return messages or ["the run failed; see the Dagster UI for the event log"]


def summarize(result: dg.ExecuteInProcessResult) -> RunSummary:
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
        rows = result.output_for_node("validation", "quarantined_rows").head(3)
        summary.quarantine_sample = [
            f"{row[SOURCE_FILE]}:{row[SOURCE_ROW]} column '{row['quarantine_column']}' "
            f"{row['quarantine_rule']}: {row['quarantine_value']}"
            for row in rows.to_dict("records")
        ]
    trained = result.output_for_node("trained_model")
    registered = result.output_for_node("registered_model")
    summary.metric = trained["metric"]
    summary.metrics = trained["holdout_metrics"]
    summary.model = registered["name"]
    summary.version = registered["version"]
    summary.champion = registered["champion"]
    summary.reason = registered["reason"]
    return summary


def run_pipeline(
    settings: Settings, run_config: dict[str, Any] | None = None, log_level: str | None = None
) -> RunSummary:
    prepare_home(settings)
    from mlops_assets.definitions import PIPELINE_JOB, build_definitions

    job = build_definitions(settings).resolve_job_def(PIPELINE_JOB)
    # Progress lines instead of Dagster's event log (unless asked for): the summary reports what
    # failed, once.
    loggers: dict[str, Any] = {"progress": {}}
    if log_level:
        loggers["console"] = {"config": {"log_level": log_level.upper()}}
    config = {"loggers": loggers, **(run_config or {})}
    with dg.DagsterInstance.get() as instance:
        had_data = instance.get_latest_materialization_event(dg.AssetKey("validated_dataset"))
        result = job.execute_in_process(instance=instance, run_config=config, raise_on_error=False)
    summary = summarize(result)
    summary.had_data = had_data is not None
    return summary
