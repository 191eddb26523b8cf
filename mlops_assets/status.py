"""`mlops-assets status`: the champion, the newest version, and the state of the assets, as
JSON-able data."""

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mlops_assets.home import prepare_home
from mlops_assets.settings import Settings

if TYPE_CHECKING:
    from mlops_assets.resources.mlflow import ModelRegistry


def asset_states(instance: Any, keys: tuple[str, ...]) -> dict[str, dict[str, str | None]]:
    import dagster as dg

    states: dict[str, dict[str, str | None]] = {}
    for key in keys:
        event = instance.get_latest_materialization_event(dg.AssetKey(key))
        if event is None:
            states[key] = {"last_materialized": None, "data_version": None}
            continue
        materialization = event.asset_materialization
        tags = (materialization.tags or {}) if materialization else {}
        states[key] = {
            "last_materialized": datetime.fromtimestamp(event.timestamp, UTC).isoformat(),
            "data_version": tags.get("dagster/data_version"),
        }
    return states


def file_states(instance: Any) -> dict[str, dict[str, str]]:
    """Each landed file's partition: read and validated (MATERIALIZED), FAILED, IN_PROGRESS,
    or MISSING (never run)."""
    import dagster as dg

    from mlops_assets.partitions import LANDED_FILES, landed_files

    keys = instance.get_dynamic_partitions(LANDED_FILES)
    states: dict[str, dict[str, str]] = {key: {} for key in keys}
    for asset in ("raw_dataset", "validated_dataset"):
        found = instance.get_status_by_partition(dg.AssetKey(asset), keys, landed_files) or {}
        for key in keys:
            status = found.get(key)
            states[key][asset] = status.value if status is not None else "MISSING"
    return states


def champion_state(registry: "ModelRegistry") -> dict[str, Any] | None:
    from mlops_assets.resources.mlflow import CHAMPION

    version = registry.version_for_alias(CHAMPION)
    if version is None:
        return None
    run = registry.client().get_run(version.run_id) if version.run_id else None
    metrics = {
        name.removeprefix("holdout_"): value
        for name, value in (run.data.metrics if run else {}).items()
        if name.startswith("holdout_")
    }
    tags = version.tags or {}
    return {
        "model": registry.model_name,
        "version": int(version.version),
        "metrics": metrics,
        "lineage": {
            "mlflow_run_id": version.run_id,
            "dagster_run_id": tags.get("dagster.run_id"),
            "dagster_run_url": tags.get("dagster.run_url"),
            "dataset_fingerprint": tags.get("dataset.fingerprint"),
            "rows": tags.get("manifest.rows"),
            "git_commit": tags.get("manifest.git_commit"),
            "gate": tags.get("gate.reason"),
            "promoted_at": tags.get("promotion.at"),
            "champion_reason": tags.get("champion.reason"),
            "previous_champion": tags.get("promotion.replaces") or None,
        },
    }


def registry_state(registry: "ModelRegistry") -> dict[str, Any]:
    """The newest version (registered but maybe not champion, and why) and the other models in
    the store, so a rejected challenger or a model of another schema is not invisible."""
    client = registry.client()
    versions = registry.versions()
    latest = None
    if versions:
        # Search results leave the aliases out; the version itself has them.
        version = client.get_model_version(registry.model_name, versions[-1].version)
        latest = {
            "version": int(version.version),
            "aliases": list(version.aliases or []),
            "gate": (version.tags or {}).get("gate.reason"),
        }
    names = (m.name for m in client.search_registered_models())
    return {"latest": latest, "other_models": sorted(n for n in names if n != registry.model_name)}


def collect_status(settings: Settings) -> dict[str, Any]:
    import dagster as dg

    from mlops_assets.definitions import ASSET_KEYS

    prepare_home(settings)
    with dg.DagsterInstance.get() as instance:
        assets = asset_states(instance, ASSET_KEYS)
        files = file_states(instance)
    if not settings.tracking_uri_has_store():
        return {
            "champion": None,
            "latest": None,
            "other_models": [],
            "assets": assets,
            "files": files,
        }
    from mlops_assets.resources.mlflow import ModelRegistry

    registry = ModelRegistry(
        tracking_uri=settings.tracking_uri, model_name=settings.registered_model_name
    )
    return {
        "champion": champion_state(registry),
        **registry_state(registry),
        "assets": assets,
        "files": files,
    }
