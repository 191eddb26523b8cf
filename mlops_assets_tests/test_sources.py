"""Reading landing files: each file on its own, fingerprinted, every row tagged."""

from pathlib import Path

import pandas as pd
import pytest

from mlops_assets.sources import (
    DEMO_SOURCE,
    SOURCE_FILE,
    SOURCE_ROW,
    UnreadableFileError,
    fingerprint,
    parse_table,
    read_demo,
    read_landing,
)


def test_demo_data_ships_with_scikit_learn() -> None:
    raw = read_demo()
    assert raw.is_demo
    assert raw.frame.shape == (569, 33)
    assert "mean radius" in raw.frame.columns and "target" in raw.frame.columns
    assert set(raw.frame[SOURCE_FILE]) == {DEMO_SOURCE}
    assert read_demo().fingerprint == raw.fingerprint


def test_empty_landing_falls_back_to_demo(tmp_path: Path) -> None:
    assert read_landing(tmp_path) is None
    assert read_landing(tmp_path / "missing") is None
    assert read_demo().is_demo


def test_rows_are_tagged_with_file_and_line(tmp_path: Path) -> None:
    pd.DataFrame({"a": [1, 2], "target": [0, 1]}).to_csv(tmp_path / "b.csv", index=False)
    pd.DataFrame({"a": [3], "target": [1]}).to_parquet(tmp_path / "a.parquet")
    (tmp_path / "notes.txt").write_text("ignored")
    raw = read_landing(tmp_path)
    assert raw is not None
    assert [s.name for s in raw.sources] == ["a.parquet", "b.csv"]
    assert raw.frame[[SOURCE_FILE, SOURCE_ROW]].values.tolist() == [
        ["a.parquet", 2],
        ["b.csv", 2],
        ["b.csv", 3],
    ]
    assert raw.frame.attrs["source_columns"] == {
        "a.parquet": ["a", "target"],
        "b.csv": ["a", "target"],
    }


def test_fingerprint_follows_content_not_mtime(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("a,target\n1,0\n2,1\n")
    first = read_landing(tmp_path)
    path.write_text("a,target\n1,0\n2,1\n")  # same bytes, new mtime
    second = read_landing(tmp_path)
    path.write_text("a,target\n1,0\n3,1\n")
    third = read_landing(tmp_path)
    assert first and second and third
    assert first.fingerprint == second.fingerprint != third.fingerprint
    assert fingerprint([("x", "1"), ("y", "2")]) == fingerprint([("y", "2"), ("x", "1")])
    assert fingerprint([("x", "1")]) != fingerprint([("x2", "1")])


@pytest.mark.parametrize(
    ("name", "payload", "reason"),
    [
        ("empty.csv", b"", "empty (0 bytes)"),
        ("header.csv", b"a,b,target\n", "header only"),
        ("utf16.csv", "a,target\n1,0\n".encode("utf-16"), "UTF-16"),
        ("latin1.csv", "name,target\nJos\xe9,1\n".encode("latin-1"), "not valid UTF-8"),
        ("binary.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary"),
        ("ragged.csv", b"a,b,target\n1,2,0\n1,2,3,4,5\n", "malformed CSV"),
        ("fake.parquet", b"a,b\n1,2\n", "not a readable Parquet file"),
    ],
)
def test_unreadable_files_name_the_problem(name: str, payload: bytes, reason: str) -> None:
    with pytest.raises(UnreadableFileError) as error:
        parse_table(Path(name), payload)
    assert name in str(error.value)
    assert reason in str(error.value)


def test_utf8_bom_and_quoted_newlines_are_read() -> None:
    payload = '\ufeffa,note,target\r\n1,"two\nlines",0\r\n2,plain,1\n'.encode()
    frame = parse_table(Path("ok.csv"), payload)
    assert list(frame.columns) == ["a", "note", "target"]
    assert frame["note"].tolist() == ["two\nlines", "plain"]


def test_unreadable_file_is_reported_and_others_still_read(tmp_path: Path) -> None:
    (tmp_path / "bad.csv").write_bytes(b"")
    (tmp_path / "good.csv").write_text("a,target\n1,0\n")
    raw = read_landing(tmp_path)
    assert raw is not None
    assert [e.path.name for e in raw.unreadable] == ["bad.csv"]
    assert len(raw.frame) == 1


@pytest.mark.parametrize("chunk", [3, 5, 1 << 24])
def test_a_file_is_checked_in_pieces_with_the_bad_byte_found_across_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    """Landing files stream through the hash and the UTF-8 check; a character split between
    two pieces is fine, a bad byte is reported at its offset in the file."""
    import hashlib

    from mlops_assets import sources

    monkeypatch.setattr(sources, "READ_CHUNK", chunk)
    good = "name,price\ncafé,2.5\n€uro,3\n".encode()
    path = tmp_path / "good.csv"
    path.write_bytes(good)
    frame, digest, size = sources.read_table_file(path)
    assert list(frame["name"]) == ["café", "€uro"]
    assert (digest, size) == (hashlib.sha256(good).hexdigest(), len(good))
    bad = tmp_path / "bad.csv"
    bad.write_bytes(good + b"caf\xe9,1\n")
    with pytest.raises(sources.UnreadableFileError, match=rf"byte 0xe9 at offset {len(good) + 3}"):
        sources.read_table_file(bad)
