"""Asset storage: Parquet and JSON, attrs kept, writes atomic."""

from pathlib import Path

import pandas as pd
import pytest

from mlops_assets.resources.io import read_frame, write_frame


def test_frame_round_trip_keeps_attrs(tmp_path: Path) -> None:
    frame = pd.DataFrame({"a": [1.5, None], "b": ["x", "y"]})
    frame.attrs["source_columns"] = {"f.csv": ["a", "b"]}
    path = tmp_path / "deep" / "v.parquet"
    write_frame(path, frame)
    loaded = read_frame(path)
    pd.testing.assert_frame_equal(loaded, frame)
    assert loaded.attrs == frame.attrs
    assert [p.name for p in path.parent.iterdir()] == ["v.parquet"]


def test_failed_write_leaves_the_previous_value(tmp_path: Path) -> None:
    path = tmp_path / "v.parquet"
    write_frame(path, pd.DataFrame({"a": [1]}))
    before = path.read_bytes()
    unstorable = pd.DataFrame({"a": [object()]})
    with pytest.raises(Exception):  # noqa: B017 - pyarrow's error type is not the point
        write_frame(path, unstorable)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["v.parquet"]


def test_a_frame_written_in_chunks_reads_back_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlops_assets.resources import io

    monkeypatch.setattr(io, "WRITE_CHUNK_ROWS", 3)
    frame = pd.DataFrame(
        {
            "a": [1.0, 2.0, None, 4.0, 5.0, 6.0, 7.0],
            # Missing in every row of the second chunk: Arrow would call that chunk's type null.
            "note": ["x", "y", "z", None, None, None, "w"],
            "_source_file": pd.Categorical(["f.csv"] * 4 + ["g.csv"] * 3),
        }
    )
    frame.attrs["source_columns"] = {"f.csv": ["a", "note"], "g.csv": ["a", "note"]}
    path = tmp_path / "v.parquet"
    write_frame(path, frame)
    import pyarrow.parquet as pq

    assert pq.ParquetFile(path).num_row_groups == 3
    loaded = read_frame(path)
    pd.testing.assert_frame_equal(loaded, frame)
    assert loaded.attrs == frame.attrs
