"""Arrow tables to pandas frames without holding both whole at once.

`Table.to_pandas(self_destruct=True)` still peaks at about twice the data (a table read from
Parquet or CSV shares buffers across columns, so little is freed early). Converting one column
at a time and dropping it from the table as it goes keeps the peak near the frame's own size:
at ten million rows that is gigabytes.
"""

import ctypes
import ctypes.util
import functools
from typing import TYPE_CHECKING, Any

# pandas is imported where it is used: the code location imports this module through the IO
# manager, and loading it should not pay for pandas.
if TYPE_CHECKING:
    import pandas as pd


def table_to_frame(table: Any) -> "pd.DataFrame":
    """The frame `table.to_pandas()` gives (pandas metadata, dictionaries as categories), built
    column by column; the caller must hold no other reference to `table`."""
    rows, parts = table.num_rows, []
    while table.num_columns:
        parts.append(_series(table.select([0])))
        table = table.drop_columns([table.column_names[0]])
    release_memory()
    return _frame(parts, rows)


def read_parquet_frame(path: Any, columns: list[str] | None = None) -> tuple["pd.DataFrame", Any]:
    """A Parquet file as a frame, read one column at a time (never the whole table in Arrow
    memory beside the frame); also returns the file's schema metadata."""
    import pyarrow.parquet as pq

    file = pq.ParquetFile(path)
    schema = file.schema_arrow
    # A stored pandas index is not data: rows are identified by their file and line instead.
    stored_index = {
        c for c in (schema.pandas_metadata or {}).get("index_columns", []) if isinstance(c, str)
    }
    names = [n for n in schema.names if n not in stored_index] if columns is None else columns
    parts = [_series(file.read(columns=[name])) for name in names]
    release_memory()
    return _frame(parts, file.metadata.num_rows), schema.metadata or {}


def _series(column: Any) -> "pd.Series":
    """A one-column table as pandas would convert it whole: select() and read(columns=...) keep
    the schema's pandas metadata, so dtypes come back as they were written. A Series, because
    concatenating one-column frames copies them where Series are taken as they are."""
    return column.to_pandas(split_blocks=True, self_destruct=True).iloc[:, 0]


def _frame(parts: list["pd.Series"], rows: int) -> "pd.DataFrame":
    import pandas as pd

    if not parts:
        return pd.DataFrame(index=pd.RangeIndex(rows))
    return pd.concat(parts, axis=1, copy=False)


def release_memory() -> None:
    """Hand freed memory back to the system: Arrow's pool keeps it for reuse, and glibc keeps
    the freed pieces of a long step's many small allocations. With frames of millions of rows
    that is gigabytes the next step (training) cannot have; Dask's workers trim for the same
    reason."""
    import pyarrow as pa

    pa.default_memory_pool().release_unused()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Any:
    """glibc's malloc_trim, looked up once; None where there is none (musl, macOS)."""
    name = ctypes.util.find_library("c")
    return getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
