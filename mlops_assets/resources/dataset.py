"""Where the data comes from and which schema guards it."""

import functools
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg


class DatasetSource(dg.ConfigurableResource):
    """The landing folder, the quarantine folder, the schema and the label column."""

    landing_dir: str
    quarantine_dir: str
    target: str = "target"
    schema_path: str | None = None
    scoring_dir: str = "data/scoring"
    project_dir: str = "."

    def read(self, progress: Any = None) -> Any:
        from mlops_assets.sources import read_raw

        return read_raw(Path(self.landing_dir), *([progress] if progress else []))

    def dataset_schema(self) -> Any:
        # Every asset of a run asks for it; build it once per schema file version.
        path = Path(self.schema_path) if self.schema_path else None
        version = path.stat().st_mtime_ns if path is not None and path.exists() else None
        return _dataset_schema(path, self.target, version)

    def quarantine_file(self, path: Path, reason: str) -> Path:
        """Move an unreadable file out of the landing folder, with its reason beside it.
        The user's file is moved, never deleted."""
        folder = Path(self.quarantine_dir) / "files"
        folder.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        target = folder / f"{stamp}-{path.name}"
        shutil.move(str(path), target)
        target.with_name(target.name + ".reason.txt").write_text(f"{path}\n{reason}\n")
        return target


@functools.lru_cache(maxsize=8)
def _dataset_schema(path: Path | None, target: str, version: int | None) -> Any:
    """The schema is treated as immutable by its users (validation copies the columns it
    changes), so one instance serves every asset of a run."""
    from mlops_assets.quality.schema import demo_schema, load_schema

    return load_schema(path, target) if path is not None else demo_schema()
