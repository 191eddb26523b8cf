"""Shared fixtures: a temporary project (MLOPS_HOME, landing folder, Dagster instance, MLflow
store) and helpers to materialize the real graph in-process against it."""

import os
import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import dagster as dg
import pandas as pd
import pytest

from mlops_assets.definitions import PIPELINE_JOB, build_definitions
from mlops_assets.partitions import LANDED_FILES, PARTITIONED_ASSETS
from mlops_assets.resources.io import StoredFrame
from mlops_assets.resources.mlflow import CHAMPION, ModelRegistry
from mlops_assets.settings import Settings

warnings.filterwarnings("ignore", message=r".*is currently in beta.*")


@pytest.fixture(scope="session", autouse=True)
def user_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The platform's per-user cache (the empty MLflow store) for this session only: tests,
    and the processes they start, never read or write the real user's."""
    path = tmp_path_factory.mktemp("user-cache")
    previous = os.environ.get("MLOPS_CACHE_DIR")
    os.environ["MLOPS_CACHE_DIR"] = str(path)
    yield path
    if previous is None:
        del os.environ["MLOPS_CACHE_DIR"]
    else:
        os.environ["MLOPS_CACHE_DIR"] = previous


@pytest.fixture(scope="session")
def mlflow_db_template(user_cache: Path) -> Path:
    """The empty MLflow store the platform keeps in the (session's) user cache: MLflow's
    migrations run once per session (3-4 s each time otherwise)."""
    from mlops_assets.tracking_store import store_template_ready

    return store_template_ready()


@dataclass
class Project:
    settings: Settings
    instance: dg.DagsterInstance

    @property
    def landing(self) -> Path:
        return self.settings.landing_dir

    def land(self, name: str, frame: pd.DataFrame) -> Path:
        path = self.landing / name
        if name.endswith(".parquet"):
            frame.to_parquet(path, index=False)
        else:
            frame.to_csv(path, index=False)
        return path

    def definitions(self) -> dg.Definitions:
        return build_definitions(self.settings)

    def materialize(
        self, run_config: dict[str, Any] | None = None, revalidate: bool = False
    ) -> Any:
        """What `mlops-assets run` does, in-process: every landed file's partition, then the
        rest. One file gives its run's result; several give a PipelineRuns."""
        from mlops_assets.runner import materialize_all, sync_partitions

        job = self.definitions().resolve_job_def(PIPELINE_JOB)
        keys = sync_partitions(self.instance, self.settings)

        def execute(partition: str | None, selection: list[dg.AssetKey] | None) -> Any:
            return job.execute_in_process(
                instance=self.instance,
                run_config=_config_for(run_config or {}, selection),
                partition_key=partition,
                asset_selection=selection,
                raise_on_error=False,
            )

        return materialize_all(execute, keys, revalidate)

    def registry(self) -> ModelRegistry:
        return ModelRegistry(
            tracking_uri=self.settings.tracking_uri,
            model_name=self.settings.registered_model_name,
        )

    def champion_version(self) -> int | None:
        version = self.registry().version_for_alias(CHAMPION)
        return None if version is None else int(version.version)

    def stored(self, asset: str, file: str | None = None) -> Path:
        """Where an asset's value is stored; for a partitioned one, the partition of `file`."""
        suffix = (
            ".parquet"
            if asset
            in {
                "raw_dataset",
                "validated_dataset",
                "quarantined_rows",
                "batch_predictions",
                "drift_report",
            }
            else ".json"
        )
        if asset in PARTITIONED_ASSETS:
            assert file is not None, f"{asset} is partitioned: name the file"
            return self.settings.storage_dir / asset / f"{quote(file, safe='')}{suffix}"
        return self.settings.storage_dir / f"{asset}{suffix}"

    def load(self, asset: str) -> pd.DataFrame:
        """The stored partitions of a partitioned asset for the files landed now, as one frame
        in file order (what training reads)."""
        keys = self.instance.get_dynamic_partitions(LANDED_FILES)
        stored = {key: self.stored(asset, key) for key in keys}
        return StoredFrame({k: p for k, p in stored.items() if p.exists()}).load()

    def snapshot(self, asset: str) -> dict[str, bytes]:
        """The stored bytes of each partition ever stored: what a failed file must leave as it
        was (compare the partitions that were there before)."""
        folder = self.settings.storage_dir / asset
        return {p.name: p.read_bytes() for p in sorted(folder.glob("*.parquet"))}


def _config_for(run_config: dict[str, Any], selection: list[dg.AssetKey] | None) -> dict[str, Any]:
    """The run config of the steps a run executes (Dagster refuses config for others)."""
    if selection is None or "ops" not in run_config:
        return run_config
    steps = {key.to_user_string() for key in selection} | (
        {"validation"} if dg.AssetKey("validated_dataset") in selection else set()
    )
    ops = {name: value for name, value in run_config["ops"].items() if name in steps}
    return (
        {**run_config, "ops": ops} if ops else {k: v for k, v in run_config.items() if k != "ops"}
    )


@contextmanager
def new_project(base: Path, mlflow_db_template: Path) -> Iterator[Project]:
    home = base / "home"
    home.mkdir()
    shutil.copyfile(mlflow_db_template, home / "mlflow.db")
    settings = Settings.from_env(
        environ={"MLOPS_HOME": str(home), "MLOPS_LANDING_DIR": str(base / "landing")},
        project_dir=base,
    )
    settings.ensure_dirs()
    (base / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(base / "dagster")) as instance:
        yield Project(settings, instance)


@pytest.fixture
def project(tmp_path: Path, mlflow_db_template: Path) -> Iterator[Project]:
    with new_project(tmp_path, mlflow_db_template) as created:
        yield created


@pytest.fixture(scope="session")
def demo_frame() -> pd.DataFrame:
    from sklearn.datasets import load_breast_cancer

    return load_breast_cancer(as_frame=True).frame


def failure_messages(result: dg.ExecuteInProcessResult) -> str:
    from mlops_assets.runner import summarize

    return "\n".join(summarize(result).errors)


# `.ci/run` provides PostgreSQL and Chromium: there a missing service is a failure, not a skip,
# so the production and browser tests can never pass by not running.
REQUIRE_SERVICES = os.environ.get("MLOPS_REQUIRE_SERVICES") == "1"


def needs(missing: str | None) -> pytest.MarkDecorator:
    """Marks tests that need a service; `missing` says why this machine lacks it (None when it
    has it). Without it they are skipped, saying why, except under `.ci/run`, where they run
    and their fixture fails with the same reason (`fail_without`)."""
    return pytest.mark.skipif(missing is not None and not REQUIRE_SERVICES, reason=str(missing))


def fail_without(missing: str | None) -> None:
    """In a fixture of tests marked `needs(missing)`: reached without the service only when
    CI requires it."""
    if missing is not None:
        pytest.fail(f"{missing} (MLOPS_REQUIRE_SERVICES=1: CI must provide it)")


# A sweep small enough for tests whose subject is not the model.
QUICK_TRAINING = {
    "ops": {
        "trained_model": {
            "config": {
                "families": ["random_forest"],
                "random_forest": {"n_estimators": [10]},
                "cv_folds": 2,
            }
        }
    }
}
