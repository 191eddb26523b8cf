"""Which rows are held out for the gate: each row by a hash of its landed file and line.

A row stays on the same side whatever else lands. A split drawn over the joined rows reshuffled
whenever a file was added, so a new version's holdout held rows the champion had trained on
(28,097 of 80,000 after a second 200,000-row file): the champion scored 0.99 on those, and no
retrained model could pass the gate against it. With the side fixed per row, the champion's
training rows are never in a challenger's holdout, as long as both used the same `seed`; a
challenger's smaller `test_size` only holds out a subset of the champion's holdout.
"""

import hashlib

import numpy as np
import pandas as pd

from mlops_assets.sources import SOURCE_FILE, SOURCE_ROW

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_SLICE = 1 << 20


def _mix(values: np.ndarray) -> np.ndarray:
    """splitmix64 on uint64 arrays: equal inputs, equal outputs, and inputs that differ in one
    bit (line 7 and line 8) come out unrelated. pandas' hash_array is its finalizer."""
    return pd.util.hash_array(values + _GOLDEN)


def _file_key(name: str, seed: int) -> int:
    digest = hashlib.blake2b(f"{seed}\0{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def row_draws(frame: pd.DataFrame, seed: int) -> np.ndarray:
    """A number in [0, 1) per row, fixed by the row's file, line and `seed`. A frame without
    the lineage columns (not from a landed file) is keyed by position instead."""
    lineage = SOURCE_FILE in frame.columns and SOURCE_ROW in frame.columns
    if lineage:
        files = pd.Categorical(frame[SOURCE_FILE])
        keys = np.array([_file_key(str(name), seed) for name in files.categories], np.uint64)
        codes = files.codes
        lines = frame[SOURCE_ROW].to_numpy()
    draws = np.empty(len(frame), dtype=np.float64)
    # In slices: the mixing's temporaries stay a few MB instead of several copies of a
    # ten-million-row column.
    for start in range(0, len(frame), _SLICE):
        stop = min(start + _SLICE, len(frame))
        if lineage:
            key = keys[codes[start:stop]]
            line = lines[start:stop].astype(np.uint64)
        else:
            key = np.uint64(_file_key("", seed))
            line = np.arange(start, stop, dtype=np.uint64)
        draws[start:stop] = (_mix(key ^ _mix(line)) >> np.uint64(11)) * 2.0**-53
    return draws


def held_out(draws: np.ndarray, labels: pd.Series, test_size: float) -> np.ndarray:
    """Rows whose draw is below `test_size`. Stratified in expectation only (at 569 rows the
    holdout is 114 +/- 10), so a class of a few rows could end up on one side alone: its
    lowest draw is then held out, or its highest kept for training, whichever side lacks it."""
    mask = draws < test_size
    codes, _ = pd.factorize(labels)
    for code in np.unique(codes):
        rows = np.flatnonzero(codes == code)
        if len(rows) < 2:
            continue
        inside = mask[rows]
        if not inside.any():
            mask[rows[np.argmin(draws[rows])]] = True
        elif inside.all():
            mask[rows[np.argmax(draws[rows])]] = False
    return mask


def holdout_positions(
    frame: pd.DataFrame, labels: pd.Series, test_size: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(training, holdout) row positions, each in row order."""
    mask = held_out(row_draws(frame, seed), labels, test_size)
    return np.flatnonzero(~mask), np.flatnonzero(mask)
