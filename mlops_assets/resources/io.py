"""Asset values on disk: DataFrames as Parquet, records as JSON, never pickles.

Writes go to a temporary file renamed into place, so a crashed run never leaves a half-written
value for downstream to read, and a failed materialization leaves the previous value as it was.
"""

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote

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
    a LazyFrame) to read only the columns a step needs, and to let go of the rows once taken.

    For a partitioned asset it stands for the stored partitions, in key order: one landed file
    each, read as one frame. A partition whose latest run failed stored nothing new, so what is
    read is its latest passing materialization."""

    def __init__(self, parts: dict[str, Path] | Path) -> None:
        self.parts = dict(sorted(parts.items())) if isinstance(parts, dict) else {"": parts}

    @property
    def partitions(self) -> list[str]:
        return list(self.parts)

    def only(self, keys: "Iterable[str]") -> "StoredFrame":
        """The same stored data restricted to `keys` (those that are stored)."""
        if "" in self.parts:
            return self  # not partitioned: there is nothing to restrict
        wanted = set(keys)
        return StoredFrame({k: p for k, p in self.parts.items() if k in wanted})

    @property
    def columns(self) -> list[str]:
        import pyarrow.parquet as pq

        names: dict[str, None] = {}
        for path in self.parts.values():
            names.update(dict.fromkeys(pq.ParquetFile(path).schema_arrow.names))
        return list(names)

    def attrs(self) -> dict[str, Any]:
        """The frames' attrs merged: per-file dictionaries (columns, content hashes) joined."""
        import pyarrow.parquet as pq

        merged: dict[str, Any] = {}
        for path in self.parts.values():
            raw = (pq.read_schema(path).metadata or {}).get(_ATTRS_KEY)
            for key, value in (json.loads(raw) if raw else {}).items():
                if isinstance(value, dict):
                    merged.setdefault(key, {}).update(value)
                else:
                    merged[key] = value
        return merged

    def load(self, columns: list[str] | None = None) -> Any:
        if len(self.parts) == 1:
            return read_frame(next(iter(self.parts.values())), columns)
        return _read_frames(list(self.parts.values()), columns, self.attrs())


def _read_frames(paths: list[Path], columns: list[str] | None, attrs: dict[str, Any]) -> Any:
    """Several stored frames as one, through Arrow: the files' tables are joined without a
    copy and converted column by column, so the peak is about one frame, not two."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mlops_assets.arrow_frames import table_to_frame

    if not paths:
        return pd.DataFrame(columns=columns or [])
    tables = [pq.read_table(path, columns=columns).replace_schema_metadata(None) for path in paths]
    # pandas metadata would describe only the first file; the columns themselves are typed. A
    # column that is a category in one file (a file name) and text in another is joined as a
    # category: one small code per row.
    coded = {f.name for t in tables for f in t.schema if pa.types.is_dictionary(f.type)}
    tables = [_as_categories(t, coded) for t in tables]
    table = pa.concat_tables(tables, promote_options="permissive")
    del tables
    frame = table_to_frame(table)
    del table
    frame.attrs.update(attrs)
    return frame


def _as_categories(table: Any, names: set[str]) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    for name in names & set(table.column_names):
        column = table.column(name)
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        coded = pc.dictionary_encode(column.cast(pa.string()))
        table = table.set_column(
            table.column_names.index(name), name, coded.cast(pa.dictionary(pa.int32(), pa.string()))
        )
    return table


class LocalParquetIOManager(dg.ConfigurableIOManager):
    """Stores each asset under `base_dir/<asset key>.parquet` (DataFrames) or `.json`."""

    base_dir: str

    def _path(
        self, context: dg.OutputContext | dg.InputContext, suffix: str, partition: str = ""
    ) -> Path:
        base = Path(self.base_dir, *context.asset_key.path)
        if partition:
            # One file per partition under the asset's folder; the key is a landed file's name.
            return base / f"{quote(partition, safe='')}{suffix}"
        return base.with_suffix(suffix)

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        import pandas as pd

        if obj is None:
            return
        partition = context.asset_partition_key if context.has_asset_partitions else ""
        if isinstance(obj, pd.DataFrame):
            path = self._path(context, ".parquet", partition)
            write_frame(path, obj)
        else:
            path = self._path(context, ".json", partition)
            payload = json.dumps(obj, indent=2, default=str)
            _atomic_write(path, lambda tmp: Path(tmp).write_text(payload))
        context.add_output_metadata({"path": dg.MetadataValue.path(str(path))})

    def load_input(self, context: dg.InputContext) -> Any:
        if context.has_asset_partitions:
            return self._load_partitions(context)
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

    def _load_partitions(self, context: dg.InputContext) -> Any:
        """The stored partitions the input maps to: one partition's value as it was stored, or
        several as one frame. Partitions with nothing stored (never passed) are left out."""
        keys = context.asset_partition_keys
        stored = {k: self._path(context, ".parquet", k) for k in keys}
        stored = {k: p for k, p in stored.items() if p.exists()}
        handle = StoredFrame(stored)
        if context.dagster_type.typing_type is StoredFrame:
            return handle
        if len(keys) == 1 and not stored:
            single = self._path(context, ".json", keys[0])
            if single.exists():
                return json.loads(single.read_text())
            raise FileNotFoundError(
                f"no stored value for partition {keys[0]!r} of asset "
                f"{context.asset_key.to_user_string()} under {self.base_dir}: materialize it first"
            )
        return handle.load()
