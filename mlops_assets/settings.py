"""The MLOPS_* environment, read once into one typed object.

Everything else takes a `Settings` instead of reading `os.environ`, so tests can build a whole
platform against temporary folders without touching the process environment.
"""

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

DEFAULT_TARGET = "target"
DEMO_MODEL_NAME = "breast_cancer_classifier"


@dataclass(frozen=True)
class Settings:
    project_dir: Path
    home: Path
    landing_dir: Path
    scoring_dir: Path
    dagster_home: Path
    tracking_uri: str
    artifacts_dir: Path
    experiment_name: str = "mlops-assets"
    model_name: str | None = None
    target: str = DEFAULT_TARGET
    schema_path: Path | None = None
    executor: str = "in_process"
    mlflow_ui_url: str = "http://127.0.0.1:5000"
    dagster_ui_url: str = "http://127.0.0.1:3000"
    # Dagster's sensor daemon loops every ~5 s, so a shorter interval only trims the wait.
    sensor_interval: int = 2
    automation_interval: int = 5
    failure_webhook: str | None = None
    gate_floors: str = '{"f1_macro": 0.7}'
    gate_tolerance: float = 0.01
    gate_require_significant: bool = True
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def storage_dir(self) -> Path:
        """Where the IO manager keeps asset values (Parquet and JSON)."""
        return self.home / "storage"

    @property
    def reports_dir(self) -> Path:
        """Plots and per-version HTML model reports, readable without any server."""
        return self.home / "reports"

    @property
    def registered_model_name(self) -> str:
        if self.model_name:
            return self.model_name
        if self.schema_path is not None:
            return f"{self.schema_path.stem}_classifier"
        return DEMO_MODEL_NAME

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, project_dir: Path | None = None
    ) -> "Settings":
        env = os.environ if environ is None else environ
        project = Path(env.get("MLOPS_PROJECT_DIR") or project_dir or Path.cwd()).resolve()

        def path(name: str, default: Path) -> Path:
            value = env.get(name)
            return (project / value).resolve() if value else default

        home = path("MLOPS_HOME", project / ".mlops")
        schema = env.get("MLOPS_SCHEMA")
        return cls(
            project_dir=project,
            home=home,
            landing_dir=path("MLOPS_LANDING_DIR", project / "data" / "landing"),
            scoring_dir=path("MLOPS_SCORING_DIR", project / "data" / "scoring"),
            # An explicit DAGSTER_HOME or MLFLOW_TRACKING_URI wins over MLOPS_HOME.
            dagster_home=path("DAGSTER_HOME", home / "dagster"),
            tracking_uri=env.get("MLFLOW_TRACKING_URI") or f"sqlite:///{home / 'mlflow.db'}",
            artifacts_dir=path("MLOPS_ARTIFACTS_DIR", home / "mlartifacts"),
            experiment_name=env.get("MLOPS_EXPERIMENT", "mlops-assets"),
            model_name=env.get("MLOPS_MODEL_NAME") or None,
            target=env.get("MLOPS_TARGET") or DEFAULT_TARGET,
            schema_path=(project / schema).resolve() if schema else None,
            executor=env.get("MLOPS_EXECUTOR", "in_process"),
            mlflow_ui_url=env.get("MLOPS_MLFLOW_UI_URL", "http://127.0.0.1:5000").rstrip("/"),
            dagster_ui_url=env.get("MLOPS_DAGSTER_UI_URL", "http://127.0.0.1:3000").rstrip("/"),
            sensor_interval=int(env.get("MLOPS_SENSOR_INTERVAL", "2")),
            automation_interval=int(env.get("MLOPS_AUTOMATION_INTERVAL", "5")),
            failure_webhook=env.get("MLOPS_FAILURE_WEBHOOK") or None,
            gate_floors=env.get("MLOPS_GATE_FLOORS", '{"f1_macro": 0.7}'),
            gate_tolerance=float(env.get("MLOPS_GATE_TOLERANCE", "0.01")),
            gate_require_significant=env.get("MLOPS_GATE_REQUIRE_SIGNIFICANT", "true").lower()
            not in {"0", "false", "no"},
        )

    def tracking_uri_has_store(self) -> bool:
        """False when a local SQLite store was never created: nothing to read, nothing to create."""
        from mlops_assets.tracking_store import sqlite_path

        database = sqlite_path(self.tracking_uri)
        return database is None or database.exists()

    def as_plain(self) -> dict[str, object]:
        """The settings as strings, numbers and None (what Dagster can pass to a job factory
        it reconstructs); `from_plain` reads them back."""
        return {
            name: str(value)
            if isinstance(value, Path)
            else dict(value)
            if isinstance(value, Mapping)
            else value
            for name, value in ((f.name, getattr(self, f.name)) for f in fields(self))
        }

    @classmethod
    def from_plain(cls, plain: Mapping[str, object]) -> "Settings":
        paths = {f.name for f in fields(cls) if "Path" in str(f.type)}
        return cls(
            **{  # type: ignore[arg-type]
                name: Path(value) if name in paths and isinstance(value, str) else value
                for name, value in plain.items()
            }
        )

    def with_overrides(self, **changes: object) -> "Settings":
        return replace(self, **changes)  # type: ignore[arg-type]

    def ensure_dirs(self) -> None:
        folders = (
            self.home,
            self.landing_dir,
            self.scoring_dir,
            self.dagster_home,
            self.artifacts_dir,
        )
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)
