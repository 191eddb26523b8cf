"""What one more landed file costs when hundreds are already landed.

In a fresh MLOPS_HOME on the SQLite default, files of `--rows` rows (the scale benchmark's table)
land one by one. Each landing is what the daemon does with it: a landing_sensor tick (scan, plan,
partition added), then the file's run of its partitions (raw_dataset, validation, drift_report).
The first file's run is the whole graph, so there is a champion to compare label mixes and drift
against. Files 3 to N-1 are landed and materialized in bulk (timed as a whole); then the Nth.

Printed: the median cost of a landing (tick and run) for files 2 to 1+probes and for files N to
N+probes-1, their ratio (the target: at most 1.5), and the landing-to-champion time of the last
file (its tick, its run, then one training run over all files, as automation launches it).

    .venv/bin/python benchmarks/partitions.py --files 500 --rows 2000
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from scale import TARGET, _chunk, _structure  # noqa: E402


def _tick(defs: Any, instance: Any, cursor: str | None) -> tuple[Any, float]:
    from mlops_assets_tests.sensors import tick_landing_sensor

    started = time.perf_counter()
    result = tick_landing_sensor(defs, instance, cursor)
    return result, time.perf_counter() - started


def _run(job: Any, instance: Any, request: Any, config: dict[str, Any]) -> float:
    started = time.perf_counter()
    result = job.execute_in_process(
        instance=instance,
        partition_key=request.partition_key,
        asset_selection=request.asset_selection,
        run_config=config,
        raise_on_error=False,
    )
    if not result.success:
        raise SystemExit(f"run for {request.partition_key} failed")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument(
        "--probes", type=int, default=5, help="files landed one by one at each end, timed"
    )
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="mlops-partitions-"))
    os.environ.update(
        {
            "MLOPS_HOME": str(base / "home"),
            "MLOPS_LANDING_DIR": str(base / "landing"),
            "MLOPS_PROJECT_DIR": str(base),
            "MLOPS_SCHEMA": str(base / "schema.yaml"),
        }
    )
    import dagster as dg

    from mlops_assets.definitions import PIPELINE_JOB, build_definitions
    from mlops_assets.home import prepare_home
    from mlops_assets.partitions import PARTITIONED_ASSETS
    from mlops_assets.quality.schema import infer_schema
    from mlops_assets.runner import DOWNSTREAM_ASSETS
    from mlops_assets.settings import Settings

    structure = _structure()
    landing = base / "landing"
    landing.mkdir(parents=True)

    def land(i: int) -> None:
        frame = _chunk(args.rows, 1000 + i, structure)
        frame.to_csv(landing / f"file_{i:05d}.csv", index=False)

    first = _chunk(args.rows, 1000, structure)
    Path(os.environ["MLOPS_SCHEMA"]).write_text(infer_schema(first, TARGET, "bench").to_yaml())
    settings = Settings.from_env()
    settings.ensure_dirs()
    prepare_home(settings)
    defs = build_definitions(settings)
    job = defs.resolve_job_def(PIPELINE_JOB)
    quick = {"loggers": {"progress": {}}}
    figures: dict[str, float] = {}
    with dg.DagsterInstance.get() as instance:
        cursor = None
        result, _ = _tick(defs, instance, cursor)  # the demo's partition, no run
        cursor = result.cursor

        selection = [dg.AssetKey(name) for name in PARTITIONED_ASSETS]

        def one(i: int, name: str, whole_graph: bool = False) -> None:
            """File i landed alone: a sensor tick, then its run. The timed landings run the
            file's partitions only (reading and validating it), which is what must not grow
            with the number of files; training over all of them is timed apart."""
            nonlocal cursor
            land(i)
            result, tick = _tick(defs, instance, cursor)
            cursor = result.cursor
            [request] = result.run_requests
            if not whole_graph:
                request = dg.RunRequest(
                    partition_key=request.partition_key, asset_selection=selection
                )
            figures[f"{name}_tick"] = tick
            figures[f"{name}_run"] = _run(job, instance, request, quick)

        one(1, "file_1", whole_graph=True)  # a champion to compare label mixes and drift with
        # The 2nd file and a few after it, one by one: single timings on two cores are noisy.
        for i in range(2, 2 + args.probes):
            one(i, f"early_{i}")
        started = time.perf_counter()
        for i in range(2 + args.probes, args.files):
            land(i)
        result, _ = _tick(defs, instance, cursor)
        cursor = result.cursor
        for request in result.run_requests:
            _run(job, instance, request, quick)
        figures["bulk_files"] = args.files - 2 - args.probes
        figures["bulk_seconds"] = time.perf_counter() - started
        for i in range(args.files, args.files + args.probes):
            one(i, f"late_{i}")
        started = time.perf_counter()
        downstream = [dg.AssetKey(name) for name in DOWNSTREAM_ASSETS]
        retrain = job.execute_in_process(
            instance=instance, asset_selection=downstream, run_config=quick
        )
        figures["retrain_all_files"] = time.perf_counter() - started
        assert retrain.success

    def landing(kind: str) -> float:
        keys = sorted({k.rsplit("_", 1)[0] for k in figures if k.startswith(kind)})
        return statistics.median(figures[f"{k}_tick"] + figures[f"{k}_run"] for k in keys)

    second, last = landing("early_"), landing("late_")
    print(f"\n{args.files} files of {args.rows:,} rows on the SQLite default ({base})")
    print(f"  file 1 (whole graph, the first champion): {figures['file_1_run']:.1f} s")
    print(
        f"  files 2-{1 + args.probes}, one by one: median {second:.2f} s per file "
        "(sensor tick + the file's run)"
    )
    print(
        f"  files {2 + args.probes}-{args.files - 1} together: {figures['bulk_seconds']:.0f} s "
        f"({figures['bulk_seconds'] / max(figures['bulk_files'], 1):.2f} s per file)"
    )
    print(
        f"  files {args.files}-{args.files + args.probes - 1}, one by one: median {last:.2f} s "
        "per file"
    )
    print(f"  late / early: {last / second:.2f}x (target <= 1.5)")
    files, retrain = args.files + args.probes - 1, figures["retrain_all_files"]
    print(
        f"  landing to champion at {files} files: {last + retrain:.1f} s (the file's run, then "
        f"training on {files * args.rows:,} rows: {retrain:.1f} s)"
    )
    print(json.dumps({k: round(v, 3) for k, v in figures.items()}))


if __name__ == "__main__":
    main()
