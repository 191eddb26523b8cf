"""Does a landed file's class mix belong with the data the model learned from?

A stuck labelling job writes one class for a whole batch; a wrong join shifts the mix. Each
rule on its own rows passes such a file, so each file's class counts are compared with a
reference: the current champion's training sample, or before there is one, the other files.

The test is a chi-square test of homogeneity on the two count vectors, so the reference's own
sampling noise counts as well as the file's. Significance alone would refuse a file of a million
rows for a one-point drift, so a file is refused only when the mix also moved by at least
`min_shift` (total variation distance: the share of rows that would have to change class).
"""

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

RULE = "label_mix"


@dataclass(frozen=True)
class LabelMixPolicy:
    # Below this p-value the difference is beyond chance.
    alpha: float = 0.001
    # ...and it must be at least this large to matter (total variation distance). A fifth of
    # the rows is what a stuck or swapped labeller or a wrong join does; the demo's own rows
    # split by position differ by 13 points, which is how data ordered in time looks.
    min_shift: float = 0.20
    # Fewer valid rows than this and a file's mix says too little to judge.
    min_rows: int = 50
    # "file@sha256" of batches a person accepted as they are.
    accepted: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class LabelShift:
    file: str
    rows: int
    shares: dict[str, float]
    reference_shares: dict[str, float]
    reference: str
    shift: float
    p_value: float

    def message(self) -> str:
        def mix(shares: dict[str, float]) -> str:
            return ", ".join(f"{k}: {v:.0%}" for k, v in shares.items())

        return (
            f"class mix of {self.rows} rows is {mix(self.shares)} against "
            f"{mix(self.reference_shares)} in {self.reference}: {self.shift:.0%} of rows "
            "would have to change class "
            f"(chi-square p={self.p_value:.2g}). If the batch is right, accept it with "
            f"`mlops-assets accept-labels {self.file}`"
        )


def acceptance_key(file: str, sha256: str) -> str:
    """What an acceptance names: a file's name and its content, so changed bytes are judged
    again."""
    return f"{file}@{sha256}"


def class_counts(labels: pd.Series) -> pd.Series:
    return _by_class_name(labels.value_counts())


def class_counts_by_file(
    frame: pd.DataFrame, file_column: str, target: str
) -> dict[str, pd.Series]:
    """{file: class counts}, counted on the two columns alone (no copy of each file's rows)."""
    counts = frame[[file_column, target]].value_counts()
    return {
        str(file): _by_class_name(counts.xs(file, level=0))
        for file in counts.index.get_level_values(0).unique()
    }


def _by_class_name(counts: pd.Series) -> pd.Series:
    # Class names as text: a reference read back from Parquet and a CSV's labels compare.
    counts = counts.copy()
    counts.index = counts.index.astype(str)
    return counts.groupby(level=0).sum().sort_index()


def label_shift(
    file: str,
    counts: pd.Series,
    reference: pd.Series,
    reference_name: str,
    policy: LabelMixPolicy,
) -> LabelShift | None:
    """The shift of `counts` (one file's class counts) from `reference` when it is beyond
    chance and large enough to matter; None otherwise, or when either side is too small."""
    from scipy.stats import chi2_contingency

    rows, reference_rows = int(counts.sum()), int(reference.sum())
    if rows < policy.min_rows or reference_rows < policy.min_rows:
        return None
    classes = sorted(set(counts.index) | set(reference.index))
    observed = counts.reindex(classes, fill_value=0).to_numpy(dtype=float)
    expected = reference.reindex(classes, fill_value=0).to_numpy(dtype=float)
    shares, reference_shares = observed / rows, expected / reference_rows
    shift = float(np.abs(shares - reference_shares).sum() / 2)
    if shift < policy.min_shift:
        return None
    table = np.vstack([observed, expected])
    table = table[:, table.sum(axis=0) > 0]
    p_value = float(chi2_contingency(table).pvalue) if table.shape[1] > 1 else 1.0
    if p_value >= policy.alpha:
        return None
    return LabelShift(
        file=file,
        rows=rows,
        shares={c: round(float(s), 4) for c, s in zip(classes, shares, strict=True)},
        reference_shares={
            c: round(float(s), 4) for c, s in zip(classes, reference_shares, strict=True)
        },
        reference=reference_name,
        shift=shift,
        p_value=p_value,
    )


def label_shifts(
    per_file: dict[str, pd.Series],
    hashes: dict[str, str],
    reference: pd.Series | None,
    reference_name: str,
    policy: LabelMixPolicy,
) -> list[LabelShift]:
    """Each file against `reference` (the champion's training sample). Without one, each file
    against the other files pooled, most shifted first: a refused file leaves the pool before
    the rest are judged, so one stuck batch does not make the good ones look shifted. A file is
    judged against others only when at least two remain (with one, nothing says which is
    right). Accepted files are not judged."""
    judged = {
        file: counts
        for file, counts in per_file.items()
        if acceptance_key(file, hashes.get(file, "")) not in policy.accepted
    }
    if reference is not None:
        found = (label_shift(f, c, reference, reference_name, policy) for f, c in judged.items())
        return [shift for shift in found if shift is not None]
    pool, shifts = dict(per_file), []
    while len(pool) >= 3:
        candidates = []
        for file in judged:
            if file not in pool:
                continue
            others = pd.concat([c for f, c in pool.items() if f != file], axis=1)
            pooled = others.fillna(0).sum(axis=1)
            shift = label_shift(file, judged[file], pooled, "the other landed files", policy)
            if shift is not None:
                candidates.append(shift)
        if not candidates:
            break
        worst = max(candidates, key=lambda s: s.shift)
        shifts.append(worst)
        del pool[worst.file]
    return shifts
