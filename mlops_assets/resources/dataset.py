"""Where the data comes from and which schema guards it."""

import functools
from pathlib import Path
from typing import Any

import dagster as dg


class DatasetSource(dg.ConfigurableResource):
    """The landing folder, the schema and the label column."""

    landing_dir: str
    target: str = "target"
    schema_path: str | None = None
    scoring_dir: str = "data/scoring"
    project_dir: str = "."

    def read_partition(self, key: str, progress: Any = None) -> Any:
        """The landed file a partition stands for (the demo data for its own key)."""
        from mlops_assets.sources import DEMO_SOURCE, read_demo, read_source

        if key == DEMO_SOURCE:
            return read_demo()
        return read_source(Path(self.landing_dir) / key, *([progress] if progress else []))

    def partition_bytes(self, key: str) -> int:
        """The size of the file a partition stands for (0 for the demo data or a file gone)."""
        from mlops_assets.sources import DEMO_SOURCE

        if key == DEMO_SOURCE:
            return 0
        try:
            return (Path(self.landing_dir) / key).stat().st_size
        except OSError:
            return 0

    def dataset_schema(self) -> Any:
        # Every asset of a run asks for it; build it once per schema file version.
        path = Path(self.schema_path) if self.schema_path else None
        version = path.stat().st_mtime_ns if path is not None and path.exists() else None
        return _dataset_schema(path, self.target, version)


@functools.lru_cache(maxsize=8)
def _dataset_schema(path: Path | None, target: str, version: int | None) -> Any:
    """The schema is treated as immutable by its users (validation copies the columns it
    changes), so one instance serves every asset of a run."""
    from mlops_assets.quality.schema import demo_schema, load_schema

    return load_schema(path, target) if path is not None else demo_schema()
