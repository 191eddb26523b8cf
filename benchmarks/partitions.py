"""What one more landed file costs when hundreds are already landed.

In a fresh MLOPS_HOME on the SQLite default, files of `--rows` rows (the scale benchmark's table)
land one by one. Each landing is what the daemon does with it: a landing_sensor tick (scan, plan,
partition added), then the file's run of its partitions (raw_dataset, validation, drift_report).
The first file's run is the whole graph, so there is a champion to compare label mixes and drift
against. Files 3 to N-1 are landed and materialized in bulk (timed as a whole); then the Nth.

Printed: the 2nd and the Nth file's tick and run, their ratio (the target: at most 1.5), and the
Nth file's landing-to-champion time (its tick, its run, then one retraining run over all files,
as automation launches it).

    .venv/bin/python benchmarks/partitions.py --files 500 --rows 2000
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from scale import TARGET, _chunk, _structure  # noqa: E402


def _tick(defs: Any, instance: Any, cursor: str | None) -> tuple[Any, float]:
    import dagster as dg

    started = time.perf_counter()
    context = dg.build_sensor_context(
        instance=instance, instance_ref=instance.get_ref(), cursor=cursor, definitions=defs
    )
    result = defs.get_sensor_def("landing_sensor").evaluate_tick(context)
    for request in result.dynamic_partitions_requests or []:
        if isinstance(request, dg.AddDynamicPartitionsRequest):
            instance.add_dynamic_partitions(request.partitions_def_name, request.partition_keys)
        else:
            for key in request.partition_keys:
                instance.delete_dynamic_partition(request.partitions_def_name, key)
    return result, time.perf_counter() - started


def _run(job: Any, instance: Any, request: Any, config: dict[str, Any]) -> float:
    started = time.perf_counter()
    result = job.execute_in_process(
        instance=instance,
        partition_key=request.partition_key,
        asset_selection=request.asset_selection,
        run_config=config if request.asset_selection is None else {},
        raise_on_error=False,
    )
    if not result.success:
        raise SystemExit(f"run for {request.partition_key} failed")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--rows", type=int, default=2000)
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

        def one(i: int, name: str) -> None:
            nonlocal cursor
            land(i)
            result, tick = _tick(defs, instance, cursor)
            cursor = result.cursor
            [request] = result.run_requests
            figures[f"{name}_tick"] = tick
            figures[f"{name}_run"] = _run(job, instance, request, quick)

        one(1, "file_1")  # the whole graph: a champion to compare with
        one(2, "file_2")
        started = time.perf_counter()
        for i in range(3, args.files):
            land(i)
        result, tick = _tick(defs, instance, cursor)
        cursor = result.cursor
        for request in result.run_requests:
            _run(job, instance, request, quick)
        figures["bulk_files"] = args.files - 3
        figures["bulk_seconds"] = time.perf_counter() - started
        # The last file alone: only its partitions run (the selection automation leaves to
        # itself); then training over every file, as automation launches it.
        land(args.files)
        result, tick = _tick(defs, instance, cursor)
        [request] = result.run_requests
        selection = [dg.AssetKey(name) for name in PARTITIONED_ASSETS]
        figures["file_n_tick"] = tick
        figures["file_n_run"] = _run(
            job,
            instance,
            dg.RunRequest(partition_key=request.partition_key, asset_selection=selection),
            quick,
        )
        started = time.perf_counter()
        downstream = [dg.AssetKey(name) for name in DOWNSTREAM_ASSETS]
        retrain = job.execute_in_process(
            instance=instance, asset_selection=downstream, run_config=quick
        )
        figures["retrain_all_files"] = time.perf_counter() - started
        assert retrain.success
    second = figures["file_2_tick"] + figures["file_2_run"]
    last = figures["file_n_tick"] + figures["file_n_run"]
    print(f"\n{args.files} files of {args.rows:,} rows on the SQLite default ({base})")
    print(f"  file 1 (whole graph, first champion): {figures['file_1_run']:.1f} s")
    print(f"  file 2: tick {figures['file_2_tick']:.2f} s + run {figures['file_2_run']:.2f} s")
    print(
        f"  files 3-{args.files - 1}: {figures['bulk_seconds']:.0f} s "
        f"({figures['bulk_seconds'] / max(figures['bulk_files'], 1):.2f} s per file)"
    )
    print(
        f"  file {args.files}: tick {figures['file_n_tick']:.2f} s + run "
        f"{figures['file_n_run']:.2f} s"
    )
    print(f"  file {args.files} / file 2: {last / second:.2f}x (target <= 1.5)")
    print(
        f"  file {args.files} landing to champion: {last + figures['retrain_all_files']:.1f} s "
        f"(retraining on {args.files * args.rows:,} rows: {figures['retrain_all_files']:.1f} s)"
    )
    print(json.dumps({k: round(v, 3) for k, v in figures.items()}))


if __name__ == "__main__":
    main()
