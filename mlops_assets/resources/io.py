"""Asset values on disk: DataFrames as Parquet, records as JSON, never pickles.

Writes go to a temporary file renamed into place, so a crashed run never leaves a half-written
value for downstream to read, and a failed materialization leaves the previous value as it was.
"""

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import dagster as dg

from mlops_assets.arrow_frames import read_parquet_frame, release_memory

_ATTRS_KEY = b"mlops_assets.attrs"


def _atomic_write(path: Path, write: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# Rows converted to Arrow at a time when writing: a large frame is never held twice.
WRITE_CHUNK_ROWS = 1_000_000


def write_frame(path: Path, frame: Any) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    def chunk(start: int) -> Any:
        return pa.Table.from_pandas(
            frame.iloc[start : start + WRITE_CHUNK_ROWS], preserve_index=False
        )

    first = chunk(0)
    # DataFrame.attrs carry per-file column lists that validation needs; keep them explicitly.
    metadata = dict(first.schema.metadata or {})
    metadata[_ATTRS_KEY] = json.dumps(frame.attrs, default=str).encode()
    schema = first.schema.with_metadata(metadata)

    def write(tmp: str) -> None:
        with pq.ParquetWriter(tmp, schema) as writer:
            writer.write_table(first.replace_schema_metadata(metadata))
            for start in range(WRITE_CHUNK_ROWS, len(frame), WRITE_CHUNK_ROWS):
                writer.write_table(chunk(start).cast(schema))

    _atomic_write(path, write)
    release_memory()


def read_frame(path: Path, columns: list[str] | None = None) -> Any:
    frame, metadata = read_parquet_frame(path, columns)
    raw = metadata.get(_ATTRS_KEY)
    frame.attrs = json.loads(raw) if raw else {}
    return frame


class StoredFrame:
    """A stored frame not yet read: annotate an input with it (as dagster-polars users annotate
    a LazyFrame) to read only the columns a step needs, and to let go of the rows once taken."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def columns(self) -> list[str]:
        import pyarrow.parquet as pq

        return list(pq.ParquetFile(self.path).schema_arrow.names)

    def load(self, columns: list[str] | None = None) -> Any:
        return read_frame(self.path, columns)


class LocalParquetIOManager(dg.ConfigurableIOManager):
    """Stores each asset under `base_dir/<asset key>.parquet` (DataFrames) or `.json`."""

    base_dir: str

    def _path(self, context: dg.OutputContext | dg.InputContext, suffix: str) -> Path:
        return Path(self.base_dir, *context.asset_key.path).with_suffix(suffix)

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        import pandas as pd

        if obj is None:
            return
        if isinstance(obj, pd.DataFrame):
            path = self._path(context, ".parquet")
            write_frame(path, obj)
        else:
            path = self._path(context, ".json")
            payload = json.dumps(obj, indent=2, default=str)
            _atomic_write(path, lambda tmp: Path(tmp).write_text(payload))
        context.add_output_metadata({"path": dg.MetadataValue.path(str(path))})

    def load_input(self, context: dg.InputContext) -> Any:
        parquet = self._path(context, ".parquet")
        if parquet.exists():
            if context.dagster_type.typing_type is StoredFrame:
                return StoredFrame(parquet)
            return read_frame(parquet)
        stored = self._path(context, ".json")
        if stored.exists():
            return json.loads(stored.read_text())
        raise FileNotFoundError(
            f"no stored value for asset {context.asset_key.to_user_string()} under "
            f"{self.base_dir}: materialize it first"
        )
