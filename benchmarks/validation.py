"""Benchmark `mlops_assets.quality.validate.validate` against hand-written pandas checks.

For each size, a synthetic raw frame (20 non-negative float features `f00..f19`, a label
`target` in {0, 1, 2}, lineage columns) with exactly 1% bad rows (NaN, +inf, -inf, a negative
value, a label outside the classes) is validated twice, each time in a fresh subprocess so that
peak memory belongs to one implementation:

* ours: `validate(frame, dataset_schema, thresholds)` with a Pandera schema wrapped by
  `with_platform_rules` (coercion, strict columns, the `finite` check);
* baseline: the same rules written directly as vectorised numpy/pandas masks, producing the
  same outputs (valid frame, long-format quarantine, dataset-level failures).

Only the validation call is timed (best of `--repeat`). Peak memory is `ru_maxrss` inside the
child; the high-water mark is reset after data generation (Linux `/proc/self/clear_refs`) so the
peak is the one reached while validating, and "added" is that peak minus the resident size once
the data exist.

    .venv/bin/python benchmarks/validation.py --rows 1000000 10000000 --json /tmp/bench.json
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlops_assets.sources import LINEAGE_COLUMNS, SOURCE_FILE, SOURCE_ROW

FEATURES = [f"f{i:02d}" for i in range(20)]
TARGET = "target"
CLASSES = (0, 1, 2)
SOURCE_NAME = "bench.csv"
BAD_SHARE = 0.01
BAD_KINDS = ("nan", "posinf", "neginf", "negative", "label")
DEFAULT_SEED = 20240611
RATIO_TARGET = 1.5
PEAK_TARGET_GIB = 8.0
PEAK_TARGET_ROWS = 10_000_000
KIB_PER_GIB = 1024**2

# Rule names as Pandera reports them, so both quarantines can be compared rule by rule.
NOT_NULLABLE = "not_nullable"
FINITE = "finite"
DTYPE = "dtype"


# --------------------------------------------------------------------------------------------
# Synthetic data
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Expected:
    rows_bad: int
    entries: int  # one per (row, failed rule): a -inf fails both ge(0) and finite
    per_kind: dict[str, int]


def make_frame(rows: int, seed: int, source_dtype: str) -> tuple[pd.DataFrame, Expected]:
    rng = np.random.default_rng(seed)
    # Feature-major, so each column is contiguous in the single float block pandas keeps.
    values = rng.uniform(0.0, 100.0, size=(len(FEATURES), rows))
    target = rng.integers(0, len(CLASSES), size=rows, dtype=np.int64)

    n_bad = rows // 100  # exactly BAD_SHARE of the rows
    bad_rows = rng.choice(rows, size=n_bad, replace=False)
    kinds = np.arange(n_bad) % len(BAD_KINDS)
    feature = rng.integers(0, len(FEATURES), size=n_bad)
    per_kind = {}
    for code, kind in enumerate(BAD_KINDS):
        pick = kinds == code
        where_row, where_col = bad_rows[pick], feature[pick]
        per_kind[kind] = int(pick.sum())
        if kind == "nan":
            values[where_col, where_row] = np.nan
        elif kind == "posinf":
            values[where_col, where_row] = np.inf
        elif kind == "neginf":
            values[where_col, where_row] = -np.inf
        elif kind == "negative":
            values[where_col, where_row] = -rng.uniform(0.01, 100.0, size=where_row.size)
        else:
            target[where_row] = rng.choice(np.array([3, 4, -1]), size=where_row.size)

    frame = pd.DataFrame(values.T, columns=FEATURES, copy=False)
    frame[TARGET] = target
    if source_dtype == "category":
        frame[SOURCE_FILE] = pd.Categorical.from_codes(np.zeros(rows, np.int8), [SOURCE_NAME])
    else:  # what sources.py produces: a plain object column
        frame[SOURCE_FILE] = SOURCE_NAME
    # 1-based line in the file, header = line 1, as sources._tag does.
    frame[SOURCE_ROW] = np.arange(2, rows + 2, dtype=np.int64)
    frame.attrs["source_columns"] = {SOURCE_NAME: [*FEATURES, TARGET]}
    return frame, Expected(n_bad, n_bad + per_kind["neginf"], per_kind)


def make_dataset_schema() -> Any:
    import pandera.pandas as pa

    from mlops_assets.quality.schema import DatasetSchema, with_platform_rules

    columns = {name: pa.Column(float, checks=[pa.Check.ge(0)], nullable=False) for name in FEATURES}
    columns[TARGET] = pa.Column(int, checks=[pa.Check.isin(list(CLASSES))], nullable=False)
    schema = pa.DataFrameSchema(columns, strict=True, name="bench", metadata={"target": TARGET})
    return DatasetSchema("bench", with_platform_rules(schema), TARGET)


# --------------------------------------------------------------------------------------------
# Baseline: the same rules, written by hand
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ColumnRule:
    dtype: str  # "float64" or "int64"
    nullable: bool = False
    ge: float | None = None
    isin: tuple[int, ...] | None = None


BASELINE_RULES: dict[str, ColumnRule] = {
    **{name: ColumnRule("float64", ge=0.0) for name in FEATURES},
    TARGET: ColumnRule("int64", isin=CLASSES),
}


@dataclass
class BaselineReport:
    valid: pd.DataFrame
    quarantined: pd.DataFrame
    failures: list[tuple[str, str | None, str, str]] = field(default_factory=list)
    rows_in: int = 0
    rows_quarantined: int = 0

    @property
    def rows_valid(self) -> int:
        return len(self.valid)


def baseline_validate(
    frame: pd.DataFrame,
    rules: dict[str, ColumnRule],
    target: str,
    min_rows: int = 30,
    min_class_share: float = 0.02,
    max_quarantine_share: float = 0.10,
    max_duplicate_share: float | None = None,
    max_conflict_share: float | None = None,
    dtype_drift_share: float = 0.5,
) -> BaselineReport:
    """The duplicate rules run when their thresholds are given (validate has them since
    QualityThresholds grew max_duplicate_share / max_conflict_share)."""
    failures: list[tuple[str, str | None, str, str]] = []
    data_columns = [c for c in frame.columns if c not in LINEAGE_COLUMNS]
    for column in rules:
        if column not in data_columns:
            failures.append(("all files", column, "column_in_dataframe", "missing column"))
    for column in data_columns:
        if column not in rules:
            failures.append(("all files", column, "column_in_schema", "unexpected column"))
    output_columns = [*rules, *LINEAGE_COLUMNS]
    if failures:
        return BaselineReport(frame.iloc[0:0], pd.DataFrame(), failures, len(frame))

    n = len(frame)
    bad = np.zeros(n, dtype=bool)
    hits: list[tuple[np.ndarray, str, str, np.ndarray]] = []

    def record(mask: np.ndarray, column: str, rule: str, values: np.ndarray) -> None:
        positions = np.flatnonzero(mask)
        if positions.size:
            bad[positions] = True
            hits.append((positions, column, rule, values[positions]))

    coerced: dict[str, np.ndarray] = {}
    for column, rule in rules.items():
        values = frame[column].to_numpy()
        if values.dtype.kind not in "iuf":  # numbers that arrived as text
            present = frame[column].notna().to_numpy()
            parsed = pd.to_numeric(frame[column], errors="coerce").to_numpy("float64", np.nan)
            unparsed = present & np.isnan(parsed)
            if unparsed.sum() > dtype_drift_share * present.sum():
                failures.append((SOURCE_NAME, column, DTYPE, "the column changed type"))
            record(unparsed, column, DTYPE, values)
            values = np.where(unparsed, 0.0, parsed)  # reported once, as dtype, not as null
            coerced[column] = values
        if values.dtype.kind == "f":
            null = np.isnan(values)
            if not rule.nullable:
                record(null, column, NOT_NULLABLE, values)
            with np.errstate(invalid="ignore"):  # NaN compares False: nulls are not re-reported
                if rule.ge is not None:
                    record(
                        values < rule.ge, column, f"greater_than_or_equal_to({rule.ge:g})", values
                    )
                if rule.isin is not None:
                    record(~np.isin(values, rule.isin) & ~null, column, _isin(rule), values)
            record(np.isinf(values), column, FINITE, values)
        else:  # integers: never null, never infinite
            if rule.ge is not None:
                record(values < rule.ge, column, f"greater_than_or_equal_to({rule.ge:g})", values)
            if rule.isin is not None:
                record(~np.isin(values, rule.isin), column, _isin(rule), values)

    keep = ~bad
    valid = frame.loc[keep, output_columns]
    for column, values in coerced.items():
        valid[column] = values[keep]
    casts = {c: r.dtype for c, r in rules.items() if str(valid[c].dtype) != r.dtype}
    if casts:
        valid = valid.astype(casts)
    valid = valid.reset_index(drop=True)

    quarantined = _baseline_quarantine(frame, output_columns, hits)
    rows_quarantined = int(bad.sum())

    # Per file: a mostly bad file is refused whole.
    if rows_quarantined:
        files = frame[SOURCE_FILE]
        totals = files.value_counts(sort=False)
        bad_counts = files.iloc[np.flatnonzero(bad)].value_counts(sort=False)
        shares = bad_counts / totals.reindex(bad_counts.index)
        for source, share in shares[shares > max_quarantine_share].items():
            failures.append((str(source), None, "max_quarantine_share", f"{share:.0%} bad"))
    if not failures:
        if len(valid) < min_rows:
            failures.append(("all files", None, "min_rows", f"{len(valid)} valid rows"))
        if len(valid) and max_duplicate_share is not None:
            failures += _baseline_duplicates(
                valid, list(rules), target, max_duplicate_share, max_conflict_share or 0.0
            )
        if len(valid):
            counts = valid[target].value_counts()
            if len(counts) < 2:
                failures.append(("all files", target, "min_classes", "a single class"))
            else:
                shares = counts / counts.sum()
                for label, share in shares[shares < min_class_share].items():
                    failures.append(
                        ("all files", target, "min_class_share", f"{label!r} is {share:.1%}")
                    )
    if failures:
        valid = valid.iloc[0:0]
    return BaselineReport(valid, quarantined, failures, n, rows_quarantined)


def _baseline_duplicates(
    valid: pd.DataFrame,
    columns: list[str],
    target: str,
    max_duplicate_share: float,
    max_conflict_share: float,
) -> list[tuple[str, str | None, str, str]]:
    """Exact duplicate rows, and identical features with different labels, via row hashes."""
    failures: list[tuple[str, str | None, str, str]] = []
    features = [c for c in columns if c != target]
    feature_hash = pd.util.hash_pandas_object(valid[features], index=False).to_numpy()
    label_hash = pd.util.hash_pandas_object(valid[target], index=False).to_numpy()
    row_hash = feature_hash ^ label_hash * np.uint64(0x9E3779B97F4A7C15)
    # A repeated row repeats its features: without repeated features there is nothing to find.
    repeated_features = pd.Series(feature_hash).duplicated().to_numpy()
    if not repeated_features.any():
        return failures
    repeated = pd.Series(row_hash).duplicated().to_numpy()
    duplicates = int(repeated.sum())
    if duplicates / len(valid) > max_duplicate_share:
        failures.append(("all files", None, "max_duplicate_share", f"{duplicates} rows"))
    # Some features carry two labels iff they repeat more often than whole rows do.
    if int(repeated_features.sum()) > duplicates:
        pairs = pd.DataFrame({"features": feature_hash, "label": row_hash}).drop_duplicates()
        conflicting = pairs["features"][pairs["features"].duplicated()].unique()
        rows = int(np.isin(feature_hash, conflicting).sum())
        if rows / len(valid) > max_conflict_share:
            failures.append(("all files", target, "conflicting_labels", f"{rows} rows"))
    return failures


def _isin(rule: ColumnRule) -> str:
    return f"isin({list(rule.isin or ())})"


def _baseline_quarantine(
    frame: pd.DataFrame,
    output_columns: list[str],
    hits: list[tuple[np.ndarray, str, str, np.ndarray]],
) -> pd.DataFrame:
    """Long format, as validate's: one row per (row, failed rule), the row's values as text."""
    if not hits:
        return pd.DataFrame(columns=[*output_columns, *_QUARANTINE_COLUMNS])
    positions = np.concatenate([h[0] for h in hits])
    lengths = [h[0].size for h in hits]
    rows = frame.take(positions)[output_columns]
    data_columns = [c for c in output_columns if c not in LINEAGE_COLUMNS]
    rows[data_columns] = rows[data_columns].astype("string")
    rows["quarantine_column"] = np.repeat([h[1] for h in hits], lengths)
    rows["quarantine_rule"] = np.repeat([h[2] for h in hits], lengths)
    rows["quarantine_value"] = np.concatenate([h[3].astype(str) for h in hits])
    return rows.reset_index(drop=True)


_QUARANTINE_COLUMNS = ("quarantine_column", "quarantine_rule", "quarantine_value")


# --------------------------------------------------------------------------------------------
# Child: one implementation, one size, fresh process
# --------------------------------------------------------------------------------------------


def _rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _validate_source_hash() -> str:
    import hashlib

    import mlops_assets.quality.validate as module

    return hashlib.sha256(Path(module.__file__).read_bytes()).hexdigest()[:12]


def _reset_peak() -> bool:
    """Reset the RSS high-water mark (Linux >= 4.0) so ru_maxrss measures what follows."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


def run_child(impl: str, rows: int, repeat: int, seed: int, source_dtype: str) -> dict[str, Any]:
    # Both children import the same modules before measuring, so their baselines match.
    from mlops_assets.quality.validate import QualityThresholds, validate

    source_hash = _validate_source_hash()
    dataset = make_dataset_schema()
    thresholds = QualityThresholds()

    started = time.perf_counter()
    frame, expected = make_frame(rows, seed, source_dtype)
    generate_seconds = time.perf_counter() - started
    gc.collect()
    rss_after_data = _rss_kib()
    peak_reset = _reset_peak()
    maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    times: list[float] = []
    result: dict[str, Any] = {}
    for attempt in range(repeat):
        started = time.perf_counter()
        if impl == "ours":
            report = validate(frame, dataset, thresholds)
        else:
            report = baseline_validate(
                frame,
                BASELINE_RULES,
                TARGET,
                thresholds.min_rows,
                thresholds.min_class_share,
                thresholds.max_quarantine_share,
                getattr(thresholds, "max_duplicate_share", None),
                getattr(thresholds, "max_conflict_share", None),
            )
        times.append(time.perf_counter() - started)
        if attempt == 0:  # outputs, outside the timed call
            quarantined = report.quarantined
            rule_counts = (
                quarantined.groupby(["quarantine_column", "quarantine_rule"]).size()
                if len(quarantined)
                else pd.Series(dtype="int64")
            )
            result = {
                "rows_valid": int(report.rows_valid),
                "rows_quarantined": int(report.rows_quarantined),
                "quarantine_entries": len(quarantined),
                "rules": {
                    rule: int(count)
                    for rule, count in rule_counts.groupby(level="quarantine_rule").sum().items()
                }
                if len(rule_counts)
                else {},
                "failures": [str(f) for f in report.failures],
                "failure_rules": sorted(
                    f.rule if impl == "ours" else f[2]  # type: ignore[union-attr,index]
                    for f in report.failures
                ),
                "valid_columns": [str(c) for c in report.valid.columns],
            }
        del report
        gc.collect()

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "impl": impl,
        "rows": rows,
        "repeat": repeat,
        "source_dtype": source_dtype,
        # validate.py is being edited concurrently: record which version was measured.
        "validate_sha256": source_hash,
        "times": times,
        "best_seconds": min(times),
        "generate_seconds": generate_seconds,
        "rss_after_data_kib": rss_after_data,
        "peak_reset": peak_reset,
        "maxrss_after_data_kib": maxrss_before,
        "peak_kib": peak,
        "added_kib": peak - rss_after_data,
        "expected": {
            "rows_bad": expected.rows_bad,
            "entries": expected.entries,
            "per_kind": expected.per_kind,
        },
        **result,
    }


# --------------------------------------------------------------------------------------------
# Parent: spawn, compare, report
# --------------------------------------------------------------------------------------------


def spawn(
    impl: str, rows: int, repeat: int, seed: int, source_dtype: str, timeout: float
) -> dict[str, Any]:
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        impl,
        "--rows",
        str(rows),
        "--repeat",
        str(repeat),
        "--seed",
        str(seed),
        "--source-dtype",
        source_dtype,
    ]
    print(f"[{rows:,} rows] {impl}: running (repeat={repeat}) ...", file=sys.stderr, flush=True)
    try:
        done = subprocess.run(command, stdout=subprocess.PIPE, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"impl": impl, "rows": rows, "error": f"timed out after {timeout:.0f}s"}
    if done.returncode != 0:
        return {"impl": impl, "rows": rows, "error": f"exit code {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare(ours: dict[str, Any], base: dict[str, Any]) -> list[str]:
    problems = []
    for name, result in (("ours", ours), ("baseline", base)):
        if "error" in result:
            problems.append(f"{name} failed: {result['error']}")
    if problems:
        return problems
    expected = ours["expected"]
    for key in ("rows_valid", "rows_quarantined", "quarantine_entries", "failure_rules"):
        if ours[key] != base[key]:
            problems.append(f"{key}: ours={ours[key]!r} baseline={base[key]!r}")
    if ours["rules"] != base["rules"]:
        problems.append(f"per-rule counts: ours={ours['rules']} baseline={base['rules']}")
    if ours["rows_quarantined"] != expected["rows_bad"]:
        problems.append(f"ours quarantined {ours['rows_quarantined']}, planted {expected}")
    if ours["rows_valid"] + ours["rows_quarantined"] != ours["rows"]:
        problems.append("ours: valid + quarantined != rows in")
    return problems


def _gib(kib: float) -> float:
    return kib / KIB_PER_GIB


def print_table(results: list[dict[str, Any]]) -> None:
    header = (
        f"{'rows':>12} {'ours s':>9} {'base s':>9} {'ratio':>7} "
        f"{'ours peak GiB':>14} {'base peak GiB':>14} {'ours +GiB':>10} {'base +GiB':>10}"
    )
    print(header)
    print("-" * len(header))
    for entry in results:
        ours, base = entry["ours"], entry["baseline"]

        def cell(result: dict[str, Any], key: str, scale: Any = None, width: int = 9) -> str:
            if "error" in result:
                return f"{'ERR':>{width}}"
            value = result[key] if scale is None else scale(result[key])
            return f"{value:>{width}.3f}" if scale is None else f"{value:>{width}.2f}"

        ratio = entry.get("ratio")
        ratio_text = f"{ratio:>6.2f}x" if ratio is not None else f"{'n/a':>7}"
        print(
            f"{entry['rows']:>12,} {cell(ours, 'best_seconds')} {cell(base, 'best_seconds')} "
            f"{ratio_text} {cell(ours, 'peak_kib', _gib, 14)} {cell(base, 'peak_kib', _gib, 14)} "
            f"{cell(ours, 'added_kib', _gib, 10)} {cell(base, 'added_kib', _gib, 10)}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000])
    parser.add_argument(
        "--repeat", type=int, default=None, help="best of N (default 3 up to 1M rows, else 1)"
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument(
        "--source-dtype",
        choices=("object", "category"),
        default="category",
        help="dtype of _source_file (sources.py produces category)",
    )
    parser.add_argument("--timeout", type=float, default=3600.0, help="per child, seconds")
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    parser.add_argument("--child", choices=("ours", "baseline"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        repeat = args.repeat or 1
        print(json.dumps(run_child(args.child, args.rows[0], repeat, args.seed, args.source_dtype)))
        return 0

    results = []
    mismatches: list[str] = []
    for rows in args.rows:
        repeat = args.repeat or (3 if rows <= 1_000_000 else 1)
        ours = spawn("ours", rows, repeat, args.seed, args.source_dtype, args.timeout)
        base = spawn("baseline", rows, repeat, args.seed, args.source_dtype, args.timeout)
        problems = compare(ours, base)
        for problem in problems:
            mismatches.append(f"[{rows:,} rows] {problem}")
        ratio = (
            ours["best_seconds"] / base["best_seconds"]
            if "error" not in ours and "error" not in base
            else None
        )
        results.append(
            {"rows": rows, "ours": ours, "baseline": base, "ratio": ratio, "problems": problems}
        )

    print()
    print(
        f"validate() vs hand-written pandas checks; {len(FEATURES)} float features + label, "
        f"{BAD_SHARE:.0%} bad rows, _source_file as {args.source_dtype}; best of repeat; "
        "peak = ru_maxrss during validation, +GiB = peak minus RSS once the data exist"
    )
    print_table(results)
    print()
    ok = True
    for entry in results:
        ours = entry["ours"]
        if "error" not in ours:
            print(
                f"[{entry['rows']:,} rows] valid={ours['rows_valid']:,} "
                f"quarantined rows={ours['rows_quarantined']:,} "
                f"entries={ours['quarantine_entries']:,} rules={ours['rules']} "
                f"(validate.py sha256 {ours['validate_sha256']})"
            )
    if mismatches:
        ok = False
        print("\nMISMATCH between ours and baseline:")
        for line in mismatches:
            print(f"  - {line}")
    else:
        print("ours and baseline agree on valid rows, quarantined rows and per-rule counts")

    ratios = [e["ratio"] for e in results]
    if ratios and all(r is not None for r in ratios):
        ratio_pass = all(r <= RATIO_TARGET for r in ratios)
        ratio_text = f"max ratio {max(ratios):.2f}x -> {'PASS' if ratio_pass else 'FAIL'}"
    else:
        ratio_text = "ratio not measured (a run failed) -> FAIL"
    big = [e for e in results if e["rows"] == PEAK_TARGET_ROWS]
    if not big:
        peak_text = f"{PEAK_TARGET_ROWS // 1_000_000}M not run -> n/a"
    elif "error" in big[0]["ours"]:
        peak_text = f"ours failed at {PEAK_TARGET_ROWS // 1_000_000}M -> FAIL"
    else:
        peak = _gib(big[0]["ours"]["peak_kib"])
        peak_text = f"ours {peak:.2f} GiB -> {'PASS' if peak <= PEAK_TARGET_GIB else 'FAIL'}"
    print(
        f"target: ratio <= {RATIO_TARGET}x: {ratio_text}; "
        f"{PEAK_TARGET_ROWS // 1_000_000}M peak <= {PEAK_TARGET_GIB:g} GiB: {peak_text}"
    )

    if args.json:
        meta = {**vars(args), "json": str(args.json)}
        args.json.write_text(json.dumps({"args": meta, "results": results}, indent=2))
        print(f"results written to {args.json}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
