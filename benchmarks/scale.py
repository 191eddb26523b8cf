"""The whole platform at real data sizes, against the floor of reading and fitting alone.

For each row count: a table of 20 numeric features (some with nulls), 3 categorical columns and
a 3-class label (class clusters drawn as `make_classification` draws them, the categories cut from
informative features) is
written as one CSV in a fresh landing folder; its schema is inferred with
`mlops-assets schema infer`; then `mlops-assets run` materializes the whole graph in a fresh
MLOPS_HOME, as a user would run it. Printed per size: each step's wall time (from the run's own
progress lines), the run's peak RSS (its process, by wait4), the registered artifact's size and
the holdout macro-F1.

A new MLOPS_HOME's MLflow store is a copy of the empty store this user's first run left in the
cache (`MLOPS_CACHE_DIR`); with `--cold-store` every run starts with an empty cache instead and
pays MLflow's migrations, as the first run of an MLflow release for a user does. Which of the
two a run had is printed with it.

The floor is measured in the same invocation on the same CSV: reading it (pandas over Arrow),
then a bare `HistGradientBoostingClassifier` (defaults, categoricals from dtype) fit and predict
on the same stratified 80/20 split. The ratio printed is platform wall time / floor wall time.

    .venv/bin/python benchmarks/scale.py --rows 100000 1000000 10000000
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TARGET = "target"
SEED = 7
N_NUMERIC = 20
CATEGORICAL = {"region": 5, "channel": 3, "tier": 8}
NULL_SHARE = 0.01
KIB_PER_GIB = 1024**2
CHUNK_ROWS = 1_000_000


def _structure() -> dict[str, np.ndarray]:
    """Class clusters fixed once (as `make_classification` draws them), so every chunk of a
    large table samples the same problem and no two rows repeat."""
    rng = np.random.default_rng(SEED)
    informative, clusters = 12, 6  # 3 classes x 2 clusters
    vertices = rng.integers(0, 2, size=(clusters, informative)) * 2.0 - 1.0
    return {
        "centroids": vertices * rng.uniform(0.6, 1.0, size=(clusters, 1)),
        "mixing": rng.uniform(-1, 1, size=(clusters, informative, informative)),
        "redundant": rng.uniform(-1, 1, size=(informative, 4)),
    }


def _chunk(rows: int, seed: int, structure: dict[str, np.ndarray]) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    cluster = rng.integers(0, len(structure["centroids"]), size=rows)
    y = cluster % 3
    noise = rng.standard_normal((rows, structure["centroids"].shape[1]))
    informative = np.einsum("ri,rij->rj", noise, structure["mixing"][cluster])
    informative += structure["centroids"][cluster]
    x = np.hstack(
        [
            informative,
            informative @ structure["redundant"],
            rng.standard_normal((rows, N_NUMERIC - informative.shape[1] - 4)),
        ]
    )
    flip = rng.random(rows) < 0.02
    y[flip] = rng.integers(0, 3, size=int(flip.sum()))
    frame = pd.DataFrame(x.astype("float32"), columns=[f"f{i:02d}" for i in range(N_NUMERIC)])
    for offset, (name, levels) in enumerate(CATEGORICAL.items()):
        # Cut from an informative feature, so the categories carry signal.
        column = informative[:, offset + 3]
        bins = np.quantile(column, np.linspace(0, 1, levels + 1)[1:-1])
        codes = np.digitize(column, bins)
        frame[name] = np.array([f"{name}_{i}" for i in range(levels)], dtype=object)[codes]
    for column_name in ("f05", "f11", "f17"):
        frame.loc[rng.random(rows) < NULL_SHARE, column_name] = np.nan
    frame[TARGET] = y
    return frame


def write_dataset(path: Path, rows: int) -> None:
    """Written in chunks so the generator does not hold 10M rows of float64 at once."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    structure = _structure()
    writer = None
    for start in range(0, rows, CHUNK_ROWS):
        chunk = _chunk(min(CHUNK_ROWS, rows - start), SEED + 1 + start, structure)
        table = pa.Table.from_pandas(chunk, preserve_index=False)
        if writer is None:
            writer = pa_csv.CSVWriter(str(path), table.schema)
        writer.write_table(table)
    assert writer is not None
    writer.close()


def floor(path: Path) -> dict[str, float]:
    """Reading the CSV and a bare HistGradientBoosting fit/predict on the same split."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import f1_score
    from sklearn.model_selection import train_test_split

    started = time.perf_counter()
    frame = pd.read_csv(path, engine="pyarrow")
    read = time.perf_counter() - started
    for name in CATEGORICAL:
        frame[name] = frame[name].astype("category")
    x, y = frame.drop(columns=[TARGET]), frame[TARGET]
    train_x, test_x, train_y, test_y = train_test_split(
        x, y, test_size=0.2, random_state=42, stratify=y
    )
    started = time.perf_counter()
    model = HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=42)
    model.fit(train_x, train_y)
    fit = time.perf_counter() - started
    started = time.perf_counter()
    predicted = model.predict(test_x)
    predict = time.perf_counter() - started
    return {
        "read_s": read,
        "fit_s": fit,
        "predict_s": predict,
        "total_s": read + fit + predict,
        "f1_macro": float(f1_score(test_y, predicted, average="macro")),
    }


STEP_LINE = re.compile(r"^\s+(\S+) (done|FAILED) \(([\d.]+) s\)")
STEP_START = re.compile(r"^  (\S+) \.\.\.$")


class StepMemory:
    """The run process's resident memory, sampled every 0.2 s and kept as a peak per step (the
    step whose start line came last), so the benchmark says which step sets the peak. The
    kernel's high-water mark (VmHWM) is read too: a peak shorter than the interval still
    raises it. The step named for it is the one current at the first sample after it rose
    (a peak in a step's last 0.2 s is credited to the next). Child processes (the MLflow
    store's, tens of MB) are not counted."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.step = "start-up"
        self.peaks: dict[str, float] = {}
        self.high_water = 0.0
        self.high_water_step = self.step
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        status = Path(f"/proc/{self.pid}/status")
        while not self.done.wait(0.2):
            try:
                fields = dict(
                    line.split(":", 1) for line in status.read_text().splitlines() if ":" in line
                )
                rss, hwm = (int(fields[k].split()[0]) / KIB_PER_GIB for k in ("VmRSS", "VmHWM"))
            except (OSError, KeyError, ValueError):
                return
            self.peaks[self.step] = max(self.peaks.get(self.step, 0.0), rss)
            if hwm > self.high_water:
                self.high_water, self.high_water_step = hwm, self.step

    def stop(self) -> dict[str, float]:
        self.done.set()
        self.thread.join()
        return {k: round(v, 2) for k, v in self.peaks.items()}


METRICS_LINE = re.compile(r"best model \((\w+)\): (.*)$")


def run_platform(workdir: Path, csv: Path, log: Path) -> dict[str, Any]:
    landing = workdir / "landing"
    landing.mkdir()
    schema = workdir / "scale.yaml"
    cli = str(BIN / "mlops-assets")
    env = {
        **os.environ,
        "MLOPS_HOME": str(workdir / "home"),
        "MLOPS_LANDING_DIR": str(landing),
        "MLOPS_SCORING_DIR": str(workdir / "scoring"),
        "MLOPS_SCHEMA": str(schema),
        "MLOPS_TARGET": TARGET,
    }
    from mlops_assets.tracking_store import has_store_template

    store = "copied from the cached empty store" if has_store_template() else "built"
    started = time.perf_counter()
    subprocess.run(
        [cli, "schema", "infer", str(csv), "--target", TARGET, "-o", str(schema)],
        env=env,
        check=True,
        capture_output=True,
    )
    infer = time.perf_counter() - started
    os.link(csv, landing / csv.name)
    lines: list[str] = []
    started = time.perf_counter()
    with log.open("w") as sink:
        process = subprocess.Popen(
            [cli, "run"], env=env, stdout=subprocess.PIPE, stderr=sink, text=True, cwd=ROOT
        )
        assert process.stdout is not None
        memory = StepMemory(process.pid)
        for line in process.stdout:
            started_step = STEP_START.match(line.rstrip("\n"))
            if started_step:
                memory.step = started_step[1]
            sink.write(line)
            sink.flush()
            lines.append(line.rstrip("\n"))
            print(f"    | {line.rstrip()}", flush=True)
        step_peaks = memory.stop()
        _, status, _ = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"mlops-assets run failed; see {log}")
    steps = {m[1]: float(m[3]) for m in map(STEP_LINE.match, lines) if m}
    metrics = {}
    for line in lines:
        found = METRICS_LINE.search(line)
        if found:
            metrics = {k: float(v) for k, v in (pair.split("=") for pair in found[2].split(", "))}
    artifacts = sorted((workdir / "home" / "mlartifacts").rglob("model.skops"))
    return {
        "schema_infer_s": infer,
        "mlflow_store": store,
        "run_s": wall,
        "steps": steps,
        # Not wait4's ru_maxrss: exec records the forking process's high-water mark in the
        # child's, so after the floor (which held ten million rows in this process) it reported
        # 13.1 GiB for a run whose own peak was 7.1 GiB.
        "peak_gib": round(memory.high_water, 2),
        "step_peak_gib": step_peaks,
        "high_water_step": memory.high_water_step,
        "artifact_mb": artifacts[-1].stat().st_size / 1e6 if artifacts else float("nan"),
        "f1_macro": metrics.get("f1_macro", float("nan")),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--workdir", type=Path, help="keep data and homes here")
    parser.add_argument("--json", type=Path, help="write the results here too")
    parser.add_argument(
        "--skip-floor",
        action="store_true",
        help="profile the platform alone (no floor, no ratio): for looking into one step",
    )
    parser.add_argument(
        "--cold-store",
        action="store_true",
        help="no cached empty MLflow store: each run builds its store as a user's first does",
    )
    args = parser.parse_args()
    root = args.workdir or Path(tempfile.mkdtemp(prefix="mlops-scale-"))
    root.mkdir(parents=True, exist_ok=True)
    if args.cold_store:
        # Read by the runs (inherited) and by this process when it reports which store they had.
        os.environ["MLOPS_CACHE_DIR"] = str(root / "user-cache")
    results = []
    for rows in args.rows:
        workdir = root / f"rows-{rows}"
        workdir.mkdir(exist_ok=True)
        csv = workdir / f"scale_{rows}.csv"
        if not csv.exists():
            print(f"generating {rows:,} rows -> {csv}", flush=True)
            write_dataset(csv, rows)
        base = {"total_s": float("nan"), "f1_macro": float("nan")}
        if not args.skip_floor:
            print(f"floor: read + HistGradientBoosting on {rows:,} rows ...", flush=True)
            base = floor(csv)
            print(f"  {json.dumps({k: round(v, 3) for k, v in base.items()})}", flush=True)
        if args.cold_store:
            subprocess.run(["rm", "-rf", os.environ["MLOPS_CACHE_DIR"]], check=True)
        for stale in ("landing", "home", "scoring", "scale.yaml"):
            target = workdir / stale
            if target.is_dir():
                subprocess.run(["rm", "-rf", str(target)], check=True)
            elif target.exists():
                target.unlink()
        print(f"platform: mlops-assets run on {rows:,} rows ...", flush=True)
        platform = run_platform(workdir, csv, workdir / "run.log")
        results.append({"rows": rows, "floor": base, "platform": platform})
    print()
    print(
        "| rows | floor (read+fit+predict) | platform run | ratio | peak RSS | artifact "
        "| macro-F1 platform / floor | slowest steps |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        p, f = r["platform"], r["floor"]
        slowest = ", ".join(
            f"{k} {v:.1f} s" for k, v in sorted(p["steps"].items(), key=lambda kv: -kv[1])[:3]
        )
        print(
            f"| {r['rows']:,} | {f['total_s']:.1f} s | {p['run_s']:.1f} s "
            f"| {p['run_s'] / f['total_s']:.2f}x | {p['peak_gib']:.2f} GiB "
            f"| {p['artifact_mb']:.1f} MB | {p['f1_macro']:.4f} / {f['f1_macro']:.4f} "
            f"| {slowest} |"
        )
    for r in results:
        peaks = ", ".join(f"{k} {v:.2f}" for k, v in r["platform"]["step_peak_gib"].items())
        print(f"peak RSS by step at {r['rows']:,} rows (GiB): {peaks}")
        where = r["platform"]["high_water_step"]
        print(f"  the peak (the run process's VmHWM) was reached in {where}")
        print(f"  its MLflow store was {r['platform']['mlflow_store']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
