"""MLflow for the platform: tracking through dagster-mlflow, the registry through a typed resource.

dagster-mlflow's `mlflow_tracking` gives one MLflow run per Dagster run, tagged with the Dagster
run id, which is what the assets want. It falls short in three ways, handled here:
- it calls `mlflow.set_experiment`, which on a SQLite store puts artifacts in `./mlruns` of
  whatever folder the process started in; the experiment is created first, with its artifacts
  under MLOPS_HOME;
- it imports mlflow at import time (about 5 s here); the import happens when a run needs it, so
  the code location and the CLI load fast;
- it has no registry API and no typed configuration, hence `ModelRegistry`.
"""

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import yaml

from mlops_assets.tracking_store import (
    configure_mlflow_environment,
    ensure_experiment,
    file_lock,
    sqlite_path,
    wait_for_store,
)
from mlops_assets.training.trusted import SKOPS_TRUSTED_TYPES

CHAMPION = "champion"
CHALLENGER = "challenger"


@dg.resource(
    config_schema={
        "experiment_name": dg.Field(str, description="MLflow experiment name."),
        "mlflow_tracking_uri": dg.Field(str, description="MLflow tracking URI."),
        "artifact_location": dg.Field(
            dg.Noneable(str),
            default_value=None,
            is_required=False,
            description="Local folder for the experiment's artifacts (SQLite stores only).",
        ),
        "extra_tags": dg.Field(dg.Permissive(), is_required=False),
    },
    description="dagster-mlflow's mlflow_tracking, with the experiment created up front.",
)
def mlflow_tracking(init_context: dg.InitResourceContext) -> Iterator[Any]:
    from dagster_mlflow import mlflow_tracking as upstream

    config = init_context.resource_config
    ensure_experiment(
        config["mlflow_tracking_uri"], config["experiment_name"], config.get("artifact_location")
    )
    import mlflow

    # A run left active by an earlier Dagster run in this process must not receive our logs.
    if mlflow.active_run() is not None:
        mlflow.end_run()
    for mlf in upstream.resource_fn(init_context):  # type: ignore[call-arg]
        # Upstream leaves `mlflow_run_id` as None when it starts a new run; record the run it
        # started so every asset of this Dagster run logs into that one.
        if mlf.mlflow_run_id is None:
            active = mlflow.active_run()
            mlf.mlflow_run_id = active.info.run_id if active else None
        if mlf.mlflow_run_id is not None:
            mlflow.set_tag("mlflow.runName", mlflow_run_name(init_context.dagster_run))
        try:
            yield mlf
        finally:
            # Upstream ends its run only through a hook for op jobs, never for assets.
            if mlflow.active_run() is not None:
                mlflow.end_run()


def mlflow_run_name(dagster_run: Any) -> str:
    """Upstream names the MLflow run after the Dagster job, which for runs launched from the
    asset graph or by automation is the anonymous `__ASSET_JOB`: name those by what they
    materialized, so the runs table tells them apart."""
    name = str(dagster_run.job_name)
    if not name.startswith("__ASSET_JOB"):
        return name
    keys = sorted(key.to_user_string() for key in dagster_run.asset_selection or ())
    if not keys:
        return f"assets {dagster_run.run_id[:8]}"
    shown = ", ".join(keys[:3]) + (f" +{len(keys) - 3}" if len(keys) > 3 else "")
    return f"{shown} ({dagster_run.run_id[:8]})"


@contextmanager
def dagster_mlflow_run(mlf: Any) -> Iterator[Any]:
    """Make this Dagster run's MLflow run the active one for an asset body, and end it after.

    dagster-mlflow ends its run only through a hook for op jobs; with assets the run would stay
    active in the process and the next Dagster run in the same process would log into it."""
    import mlflow

    active = mlflow.active_run()
    if active is None or active.info.run_id != mlf.mlflow_run_id:
        if active is not None:
            mlflow.end_run()
        mlflow.start_run(run_id=mlf.mlflow_run_id)
    try:
        yield mlflow.active_run()
    except BaseException:
        mlflow.end_run(status="FAILED")
        raise
    mlflow.end_run()


class RegistryError(RuntimeError):
    """A registry operation a user asked for that cannot be done as asked."""


class ModelRegistry(dg.ConfigurableResource):
    """The MLflow model registry: versions, aliases, and loading models safely."""

    tracking_uri: str
    model_name: str
    mlflow_ui_url: str = "http://127.0.0.1:5000"
    reports_dir: str = ".mlops/reports"

    def version_dir(self, version: int) -> Path:
        """Where a version's report, plots and holdout predictions are written."""
        return Path(self.reports_dir) / self.model_name / f"v{version}"

    def client(self) -> Any:
        from mlflow.tracking import MlflowClient

        configure_mlflow_environment()
        wait_for_store(self.tracking_uri)
        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    def version_for_alias(self, alias: str) -> Any | None:
        from mlflow.exceptions import MlflowException

        try:
            return self.client().get_model_version_by_alias(self.model_name, alias)
        except MlflowException:
            return None

    def register(self, source: str, run_id: str, model_id: str | None, tags: dict[str, str]) -> Any:
        from mlflow.exceptions import MlflowException

        client = self.client()
        try:
            client.create_registered_model(self.model_name)
        except MlflowException as exc:
            if "already exists" not in str(exc).lower() and "RESOURCE_ALREADY_EXISTS" not in str(
                exc
            ):
                raise
        return client.create_model_version(
            self.model_name, source=source, run_id=run_id, tags=tags, model_id=model_id
        )

    def set_alias(self, alias: str, version: int) -> None:
        self.client().set_registered_model_alias(self.model_name, alias, str(version))

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Serialise read-champion / register / move-alias. Across Dagster runs the
        `mlflow_registry` pool does it; this file lock also covers other processes and threads
        sharing a local SQLite store."""
        database = sqlite_path(self.tracking_uri)
        if database is None:
            yield
            return
        with file_lock(database.with_name(database.name + ".registry.lock")):
            yield

    def move_champion(self, version: int, tags: dict[str, str]) -> int | None:
        """Point `champion` at `version`, recording on it the version it replaces; the alias
        moves last, so a crash before it leaves the old champion in place (the alias, not these
        tags, says which version is champion). Returns the previous champion."""
        current = self.version_for_alias(CHAMPION)
        previous = None if current is None else int(current.version)
        if previous == version:
            return previous
        self.tag_version(
            version,
            {
                **tags,
                "promotion.replaces": "" if previous is None else str(previous),
                "promotion.at": datetime.now(UTC).isoformat(timespec="seconds"),
            },
        )
        self.set_alias(CHAMPION, version)
        return previous

    def rollback(self, to: int | None, reason: str, by: str) -> tuple[int, int]:
        """Move `champion` back: to `to`, or to the champion before the current one."""
        with self.lock():
            current = self.version_for_alias(CHAMPION)
            if current is None:
                raise RegistryError(f"{self.model_name} has no champion to roll back")
            if to is None:
                previous = (current.tags or {}).get("promotion.replaces", "")
                if not previous:
                    raise RegistryError(
                        f"{self.model_name} v{current.version} records no previous champion; "
                        "name one with --to VERSION"
                    )
                to = int(previous)
            self._require(to)
            self.tag_version(
                int(current.version), {"rollback.replaced_by": str(to), "rollback.reason": reason}
            )
            self.move_champion(
                to,
                {
                    "champion.reason": f"rolled back from v{current.version} by {by}: {reason}",
                    "rollback.by": by,
                    "rollback.reason": reason,
                    "rollback.from": str(current.version),
                },
            )
            return int(current.version), to

    def force_promote(self, version: int, reason: str, by: str) -> int | None:
        """The human override: `champion` moves to `version` whatever the gate said."""
        with self.lock():
            self._require(version)
            return self.move_champion(
                version,
                {
                    "champion.reason": f"promoted by {by}, bypassing the gate: {reason}",
                    "promoted.by": by,
                    "promoted.reason": reason,
                    "promoted.forced": "true",
                },
            )

    def _require(self, version: int) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client().get_model_version(self.model_name, str(version))
        except MlflowException as exc:
            raise RegistryError(f"{self.model_name} has no version {version}") from exc

    def versions(self) -> list[Any]:
        found = self.client().search_model_versions(f"name = '{self.model_name}'")
        return sorted(found, key=lambda v: int(v.version))

    def tag_version(self, version: int, tags: dict[str, str]) -> None:
        client = self.client()
        for key, value in tags.items():
            client.set_model_version_tag(self.model_name, str(version), key, value)

    def load_model(self, version: int) -> Any:
        return self.load_model_uri(f"models:/{self.model_name}/{version}")

    def load_model_uri(self, uri: str) -> Any:
        """Load an sklearn model from its skops file with our own trusted-types list; the list
        the artifact carries about itself is not trusted, and no pickle path exists."""
        import skops.io
        from mlflow.artifacts import download_artifacts

        with tempfile.TemporaryDirectory() as tmp:
            local = Path(
                download_artifacts(
                    artifact_uri=self._storage_uri(uri),
                    dst_path=tmp,
                    tracking_uri=self.tracking_uri,
                )
            )
            spec = yaml.safe_load((local / "MLmodel").read_text())
            flavor = spec.get("flavors", {}).get("sklearn", {})
            if flavor.get("serialization_format") != "skops":
                raise ValueError(
                    f"{uri} is not stored as skops "
                    f"({flavor.get('serialization_format')!r}); refusing to unpickle it"
                )
            return skops.io.load(local / flavor["pickled_model"], trusted=SKOPS_TRUSTED_TYPES)

    def _storage_uri(self, uri: str) -> str:
        """Where a models:/ URI's files are, looked up in this registry. MLflow resolves such a
        URI through the process's default registry whatever registry it is given (a TODO in
        its models_artifact_repo): in a plain Python process, ./mlflow.db where it stands."""
        from mlflow.store.artifact.utils.models import get_model_name_and_version, is_models_uri

        if not is_models_uri(uri):
            return uri
        client = self.client()
        found = get_model_name_and_version(client, uri)
        if len(found) == 1:  # models:/<model_id>, a logged model
            return str(client.get_logged_model(found[0]).artifact_location)
        return str(client.get_model_version_download_uri(*found))

    def model_artifact_bytes(self, model_id: str) -> int:
        """Bytes of a logged model's files: what every registered version of it stores."""

        def total(path: str | None) -> int:
            found = 0
            for item in self.client().list_logged_model_artifacts(model_id, path):
                found += total(item.path) if item.is_dir else int(item.file_size or 0)
            return found

        return total(None)

    def run_url(self, experiment_id: str, run_id: str) -> str:
        return f"{self.mlflow_ui_url}/#/experiments/{experiment_id}/runs/{run_id}"

    def artifact_url(self, experiment_id: str, run_id: str, path: str) -> str:
        return f"{self.run_url(experiment_id, run_id)}/artifacts/{path}"

    def version_url(self, version: int) -> str:
        return f"{self.mlflow_ui_url}/#/models/{self.model_name}/versions/{version}"
