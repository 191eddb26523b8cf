"""MLOPS_HOME: one folder holding the Dagster instance and the MLflow store."""

import os
import shutil

from mlops_assets.settings import Settings


def prepare_home(settings: Settings) -> None:
    """Create the folders, give the Dagster instance the project's dagster.yaml, and point
    DAGSTER_HOME at it for this process and the ones it starts."""
    settings.ensure_dirs()
    project_config = settings.project_dir / "dagster.yaml"
    instance_config = settings.dagster_home / "dagster.yaml"
    # A project without its own dagster.yaml keeps whatever the instance has.
    if project_config.is_file() and project_config.resolve() != instance_config.resolve():
        stale = not instance_config.exists() or (
            instance_config.read_bytes() != project_config.read_bytes()
        )
        if stale:
            shutil.copyfile(project_config, instance_config)
    os.environ["DAGSTER_HOME"] = str(settings.dagster_home)
    os.environ.setdefault("MLOPS_PROJECT_DIR", str(settings.project_dir))
