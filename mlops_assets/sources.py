"""Where raw data comes from: the files in the landing folder, or the bundled demo dataset.

Pure functions: read bytes once, fingerprint them, parse them, tag every row with where it came
from. The Dagster layer decides what to do with the result.
"""

import codecs
import hashlib
import io
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import pandas as pd

from mlops_assets.arrow_frames import read_parquet_frame, release_memory, table_to_frame

SOURCE_FILE = "_source_file"
SOURCE_ROW = "_source_row"
LINEAGE_COLUMNS = (SOURCE_FILE, SOURCE_ROW)
SUPPORTED_SUFFIXES = (".csv", ".parquet", ".pq")
DEMO_SOURCE = "sklearn:load_breast_cancer"
# Files from this size on take seconds to read: the run's log says so as it happens.
LARGE_FILE_BYTES = 100_000_000


class UnreadableFileError(ValueError):
    """A landing file that cannot be parsed as the table its name promises."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path.name}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class SourceFile:
    name: str
    size: int
    sha256: str
    rows: int
    columns: tuple[str, ...]


@dataclass
class RawData:
    frame: pd.DataFrame
    sources: list[SourceFile]
    fingerprint: str
    unreadable: list[UnreadableFileError] = field(default_factory=list)

    @property
    def is_demo(self) -> bool:
        return [s.name for s in self.sources] == [DEMO_SOURCE]


def landing_files(landing_dir: Path) -> list[Path]:
    """Supported files, sorted so the row order and fingerprint do not depend on the filesystem."""
    if not landing_dir.is_dir():
        return []
    return sorted(
        p
        for p in landing_dir.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in SUPPORTED_SUFFIXES
    )


PARQUET_SUFFIXES = (".parquet", ".pq")
# Files are hashed and checked in pieces of this size: never held whole as bytes.
READ_CHUNK = 1 << 24


def parse_table(path: Path, payload: bytes) -> pd.DataFrame:
    """Parse one file's bytes; every way it can fail becomes an UnreadableFileError."""
    if not payload:
        raise UnreadableFileError(path, "the file is empty (0 bytes)")
    if path.suffix.lower() in PARQUET_SUFFIXES:
        return _read_parquet(path, io.BytesIO(payload))
    view = memoryview(payload)
    _check_text(path, (view[i : i + READ_CHUNK] for i in range(0, len(payload), READ_CHUNK)))
    return _read_csv(path, io.BytesIO(payload))


def read_table_file(path: Path) -> tuple[pd.DataFrame, str, int]:
    """(frame, sha256, size) of one landing file. The bytes stream through the hash and the
    text checks in 16 MB pieces, then the parser reads the file itself: the memory a file
    costs is its table's, not its bytes' as well."""
    digest = hashlib.sha256()
    parquet = path.suffix.lower() in PARQUET_SUFFIXES
    with path.open("rb") as handle:
        if parquet:
            for _ in _hashed_pieces(handle, digest):
                pass
        else:
            _check_text(path, _hashed_pieces(handle, digest))
        size = handle.tell()
    if size == 0:
        raise UnreadableFileError(path, "the file is empty (0 bytes)")
    frame = _read_parquet(path, path) if parquet else _read_csv(path, path)
    return frame, digest.hexdigest(), size


def _hashed_pieces(handle: Any, digest: Any) -> Iterator[bytes]:
    """The file in READ_CHUNK pieces, each added to `digest` as it passes."""
    for piece in iter(lambda: handle.read(READ_CHUNK), b""):
        digest.update(piece)
        yield piece


def _read_parquet(path: Path, source: Any) -> pd.DataFrame:
    try:
        return read_parquet_frame(source)[0]
    except Exception as exc:
        raise UnreadableFileError(path, f"not a readable Parquet file ({exc})") from exc


def _check_text(path: Path, pieces: Iterable[bytes | memoryview]) -> None:
    """What a CSV must be before it is parsed: not empty, not UTF-16 or binary, valid UTF-8
    throughout (decoded piece by piece and dropped: only a bad byte's position is wanted)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    consumed, blank = 0, True
    for piece in pieces:
        if consumed == 0:
            head = bytes(piece[:4096])
            if head.startswith((b"\xff\xfe", b"\xfe\xff")):
                raise UnreadableFileError(path, "encoded as UTF-16; save it as UTF-8")
            if b"\x00" in head:
                raise UnreadableFileError(path, "contains NUL bytes: a binary file, not CSV text")
        pending = decoder.getstate()[0]
        try:
            text = decoder.decode(piece)
        except UnicodeDecodeError as exc:
            # The decoder's input is what it held back from the last piece, then this one.
            _not_utf8(path, exc, consumed - len(pending))
        blank = blank and not text.strip()
        consumed += len(piece)
    pending = decoder.getstate()[0]
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        _not_utf8(path, exc, consumed - len(pending))
    if consumed == 0:
        raise UnreadableFileError(path, "the file is empty (0 bytes)")
    if blank:
        raise UnreadableFileError(path, "no header row: the file holds no columns")


def _not_utf8(path: Path, exc: UnicodeDecodeError, start: int) -> NoReturn:
    raise UnreadableFileError(
        path,
        f"not valid UTF-8 (byte 0x{exc.object[exc.start]:02x} at offset {start + exc.start}); "
        "save it as UTF-8",
    ) from exc


def _read_csv(path: Path, source: Any) -> pd.DataFrame:
    """One pass of Arrow's multi-threaded parser, read as pandas would read it: text columns
    stay text (no date inference), empty cells are missing, a column that holds any text is
    text. Arrow also counts every record's fields, so a ragged row is refused instead of
    padded with NaN or shifted into an index."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    def read(convert: Any) -> Any:
        if isinstance(source, io.BytesIO):
            source.seek(0)
        return pa_csv.read_csv(source, parse_options=parse, convert_options=convert)

    parse = pa_csv.ParseOptions(newlines_in_values=True)
    convert = pa_csv.ConvertOptions(strings_can_be_null=True, quoted_strings_can_be_null=True)
    try:
        table = read(convert)
        text_like = {
            field.name: pa.string() for field in table.schema if pa.types.is_temporal(field.type)
        }
        if text_like:
            # pandas leaves dates as text unless asked; validation and the schema expect that.
            convert.column_types = text_like
            table = read(convert)
    except pa.ArrowInvalid as exc:
        raise UnreadableFileError(path, f"malformed CSV ({str(exc).strip()})") from exc
    # The parser's buffers go back to Arrow's pool, which keeps about twice the table's size
    # for reuse unless told otherwise.
    release_memory()
    names = table.column_names
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise UnreadableFileError(path, f"repeated column name(s): {', '.join(repeated)}")
    frame = table_to_frame(table)
    del table
    if frame.empty:
        raise UnreadableFileError(path, "header only: the file holds no data rows")
    return frame


def fingerprint(parts: list[tuple[str, str]]) -> str:
    """One hash over (name, content hash) pairs: renaming or editing any input changes it."""
    digest = hashlib.sha256()
    for name, content in sorted(parts):
        digest.update(f"{name}\0{content}\n".encode())
    return digest.hexdigest()[:16]


def _tag(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """Adds the lineage columns in place: the frame was just parsed and is ours."""
    # Categorical: one small code per row instead of a string object, on millions of rows.
    frame[SOURCE_FILE] = pd.Categorical.from_codes([0] * len(frame), categories=pd.Index([source]))
    # 1-based line in the file, counting the header as line 1, so users can open the file there.
    frame[SOURCE_ROW] = range(2, len(frame) + 2)
    return frame


def file_sha256(path: Path) -> str:
    """The content hash raw_dataset records for a file, read in pieces."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for _ in _hashed_pieces(handle, digest):
            pass
    return digest.hexdigest()


def scan_landing(
    landing_dir: Path,
    known: dict[str, tuple[int, int, str]] | None = None,
    held: list[str] | None = None,
) -> dict[str, tuple[int, int, str]]:
    """{name: (size, mtime_ns, sha256)} for the landing files. A file whose size and mtime match
    `known` keeps its hash without being read again; any other file is hashed, so touching a
    file costs one read and changes nothing. Given `held`, a file still being written (see
    `still_being_written`) is not read: it keeps its `known` entry (its last whole version), or
    is left out when new, and its name is added to `held`."""
    known = known or {}
    scanned = {}
    now = time.time()
    for path in landing_files(landing_dir):
        try:
            stat = path.stat()
            previous = known.get(path.name)
            if held is not None and _unfinished(path, stat, now):
                held.append(path.name)
                if previous:
                    scanned[path.name] = previous
            elif previous and previous[0] == stat.st_size and previous[1] == stat.st_mtime_ns:
                scanned[path.name] = previous
            else:
                scanned[path.name] = (stat.st_size, stat.st_mtime_ns, file_sha256(path))
        except OSError:
            continue  # vanished or unreadable: raw_dataset reports it when it runs
    return scanned


# A file modified this recently that does not end the way a whole file of its format ends is
# taken to be still arriving (copied, uploaded, written in place): reading it now would run the
# pipeline on part of its rows, then again on all of them.
SETTLE_SECONDS = 30


def still_being_written(path: Path, now: float | None = None) -> bool:
    """Modified in the last SETTLE_SECONDS and not whole yet: empty, a CSV whose last line has
    no newline, a Parquet file without its closing magic bytes. An older file is taken as it
    is; if it is truncated, reading it fails and says why."""
    return _unfinished(path, path.stat(), time.time() if now is None else now)


def _unfinished(path: Path, stat: os.stat_result, now: float) -> bool:
    if now - stat.st_mtime > SETTLE_SECONDS:
        return False
    if stat.st_size == 0:
        return True
    with path.open("rb") as handle:
        handle.seek(max(0, stat.st_size - 4))
        tail = handle.read()
    if path.suffix.lower() in PARQUET_SUFFIXES:
        return tail != b"PAR1"
    return not tail.endswith(b"\n")


def _unify_mixed_columns(frame: pd.DataFrame) -> None:
    """A column that parsed as numbers in one file and as text in another (a typo in a cell)
    is a mix of floats and strings after concatenation, which Parquet cannot store. Such a
    column becomes text (numbers in their exact repr); validation then coerces it per file and
    quarantines the cells that are not numbers."""
    for column in frame.columns:
        values = frame[column]
        if values.dtype == object and pd.api.types.infer_dtype(values, skipna=True).startswith(
            "mixed"
        ):
            present = values.notna()
            frame[column] = values.where(~present, values[present].map(str))


def _quiet(_: str) -> None:
    return None


def read_source(path: Path, progress: Callable[[str], None] = _quiet) -> RawData:
    """One landing file, tagged with its name and lines; raises UnreadableFileError naming the
    file and what is wrong with it. `progress` hears of a file large enough to take seconds."""
    started = time.monotonic()
    try:
        size = path.stat().st_size
        if size >= LARGE_FILE_BYTES:
            progress(f"reading {path.name} ({size / 1e6:,.0f} MB) ...")
        frame, content_hash, size = read_table_file(path)
    except FileNotFoundError as exc:
        raise UnreadableFileError(path, "no longer in the landing folder") from exc
    except OSError as exc:
        raise UnreadableFileError(path, f"cannot be opened ({exc.strerror})") from exc
    source = SourceFile(
        name=path.name,
        size=size,
        sha256=content_hash,
        rows=len(frame),
        columns=tuple(str(c) for c in frame.columns),
    )
    if size >= LARGE_FILE_BYTES:
        progress(
            f"read {path.name}: {len(frame):,} rows x {len(frame.columns)} columns "
            f"in {time.monotonic() - started:.1f} s"
        )
    tagged = _tag(frame, path.name)
    _keep_source_attrs(tagged, [source])
    return RawData(tagged, [source], content_hash)


def _keep_source_attrs(frame: pd.DataFrame, sources: list[SourceFile]) -> None:
    # Concatenation turns a column missing from one file into NaNs; keep each file's own
    # columns so validation can tell "missing" from "empty".
    frame.attrs["source_columns"] = {s.name: list(s.columns) for s in sources}
    frame.attrs["source_sha256"] = {s.name: s.sha256 for s in sources}


def read_landing(landing_dir: Path, progress: Callable[[str], None] = _quiet) -> RawData | None:
    """Every landing file, each read on its own, as one frame (what a whole-folder read gives:
    the benchmarks' and tools' view). None when the folder holds no supported files."""
    paths = landing_files(landing_dir)
    if not paths:
        return None
    frames, sources, unreadable = [], [], []
    for path in paths:
        try:
            raw = read_source(path, progress)
        except UnreadableFileError as err:
            unreadable.append(err)
            continue
        sources += raw.sources
        frames.append(raw.frame)
    if len(frames) == 1:
        combined = frames[0]  # concatenating one frame would copy every column
    else:
        combined = pd.concat(frames, ignore_index=True, sort=False) if frames else pd.DataFrame()
    if len(frames) > 1:
        combined[SOURCE_FILE] = combined[SOURCE_FILE].astype("category")
        _unify_mixed_columns(combined)
    _keep_source_attrs(combined, sources)
    return RawData(
        combined, sources, fingerprint([(s.name, s.sha256) for s in sources]), unreadable
    )


def read_demo() -> RawData:
    """scikit-learn's bundled breast cancer Wisconsin data: ships with the package, no download."""
    import sklearn
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame
    content = hashlib.sha256(pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes())
    source = SourceFile(
        name=DEMO_SOURCE,
        size=int(frame.memory_usage(deep=True).sum()),
        sha256=content.hexdigest(),
        rows=len(frame),
        columns=tuple(str(c) for c in frame.columns),
    )
    tagged = _tag(frame, DEMO_SOURCE)
    _keep_source_attrs(tagged, [source])
    return RawData(
        tagged, [source], fingerprint([(f"{DEMO_SOURCE}@{sklearn.__version__}", source.sha256)])
    )
