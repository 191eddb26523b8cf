"""mlops-assets: the command line, thin over the library."""

import argparse
import json
import os
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

# First: importing it tunes the garbage collector for what this process will import.
import mlops_assets.collection  # noqa: F401
from mlops_assets.settings import Settings

if TYPE_CHECKING:
    from mlops_assets.resources.mlflow import ModelRegistry


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from mlops_assets.tracking_store import create_in_background, setup_log

    # The progress lines and the summary say what happened; MLflow's INFO lines (creating its
    # tables on a first run) only interleave with them.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    # Before Dagster is even imported: a fresh home's MLflow store is copied from the user's
    # cache, or, the first time, made on the other core.
    store = create_in_background(
        settings.tracking_uri, settings.experiment_name, str(settings.artifacts_dir)
    )
    # Before Dagster too, for the reason definitions.py imports it first: skops walks
    # sys.modules in import order for each scipy.special ufunc, and here it would otherwise
    # come after Dagster, pandas and Arrow (importing skops 1.3 s -> 0.4 s, measured in a
    # process holding what a run holds). The run imports it anyway, with scikit-learn.
    import scipy.special  # noqa: F401

    from mlops_assets.runner import run_pipeline

    print(
        f"mlops-assets: materializing the asset graph (MLOPS_HOME={settings.home}) ...", flush=True
    )
    summary = run_pipeline(settings, log_level=args.log_level)
    if store is not None and store.wait() != 0:
        print(
            "mlops-assets: creating the MLflow store in the background failed (see "
            f"{setup_log(settings.tracking_uri)}); the run created it itself",
            file=sys.stderr,
        )
    print(summary.render(), file=sys.stdout if summary.success else sys.stderr)
    return summary.exit_code


def _dev(args: argparse.Namespace, settings: Settings) -> int:
    from mlops_assets.devserver import run_dev

    return run_dev(settings, args.host, args.port, None if args.no_mlflow else args.mlflow_port)


def _status(args: argparse.Namespace, settings: Settings) -> int:
    from mlops_assets.status import collect_status

    state = collect_status(settings)
    if args.json:
        print(json.dumps(state, indent=2))
        return 0
    champion = state["champion"]
    if champion:
        metrics = ", ".join(f"{k}={v:.4f}" for k, v in sorted(champion["metrics"].items()))
        print(f"champion: {champion['model']} v{champion['version']} ({metrics})")
        for key, value in champion["lineage"].items():
            if value:
                print(f"  {key}: {value}")
    else:
        print(f"champion: none yet for {settings.registered_model_name} (run `mlops-assets run`)")
    latest = state["latest"]
    if latest and (not champion or latest["version"] != champion["version"]):
        aliases = ", ".join(latest["aliases"]) or "no alias"
        print(f"latest: v{latest['version']} ({aliases}): {latest['gate'] or ''}")
    if state["other_models"]:
        print(
            f"also in this registry: {', '.join(state['other_models'])} "
            "(MLOPS_SCHEMA or MLOPS_MODEL_NAME selects one)"
        )
    for key, asset in state["assets"].items():
        print(f"{key:18} {asset['last_materialized'] or 'never':34} {asset['data_version'] or ''}")
    files = state["files"]
    failed = [name for name, s in files.items() if "FAILED" in s.values()]
    print(f"landed files: {len(files)}, {len(failed)} failed (partitions of raw/validated_dataset)")
    for name in failed[:20]:
        states = files[name]
        print(f"  {name}: raw {states['raw_dataset']}, validated {states['validated_dataset']}")
    return 0


def _revalidate(args: argparse.Namespace, settings: Settings) -> int:
    from mlops_assets.runner import DOWNSTREAM_ASSETS, REVALIDATED_ASSETS, run_pipeline

    if args.url:
        from mlops_assets.trigger import TriggerError, backfill

        print(f"mlops-assets: backfilling every landed file's validation on {args.url} ...")
        try:
            result = backfill(
                args.url,
                [*REVALIDATED_ASSETS, *DOWNSTREAM_ASSETS],
                "mlops-assets revalidate",
                timeout=args.timeout,
            )
        except TriggerError as exc:
            print(f"mlops-assets: {exc}", file=sys.stderr)
            return 2
        line = (
            f"backfill {result.run_id} {result.status} after {result.seconds:.0f} s: {result.url}"
        )
        print(line, file=sys.stdout if result.success else sys.stderr)
        return 0 if result.success else 1
    print(f"mlops-assets: validating every landed file again (MLOPS_HOME={settings.home}) ...")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    summary = run_pipeline(settings, log_level=args.log_level, revalidate=True)
    print(summary.render(), file=sys.stdout if summary.success else sys.stderr)
    return summary.exit_code


def _trigger(args: argparse.Namespace, settings: Settings) -> int:
    from mlops_assets.definitions import PIPELINE_JOB
    from mlops_assets.partitions import PARTITIONED_ASSETS
    from mlops_assets.runner import DOWNSTREAM_ASSETS
    from mlops_assets.trigger import TriggerError, trigger

    url = args.url or settings.dagster_ui_url
    select = [key for item in args.select or [] for key in item.split(",") if key]
    partition = args.partition
    if partition is None:
        per_file = sorted(set(select) & set(PARTITIONED_ASSETS))
        if per_file:
            print(
                f"mlops-assets: {', '.join(per_file)} are kept per landed file: name one with "
                "--partition FILE",
                file=sys.stderr,
            )
            return 2
        # Without a file: retrain on every file that passed validation, and what follows.
        select = select or list(DOWNSTREAM_ASSETS)
    what = ", ".join(select) or PIPELINE_JOB
    where = f" for {partition}" if partition else ""
    print(f"mlops-assets: launching {what}{where} on {url} ...", flush=True)
    try:
        result = trigger(
            url, PIPELINE_JOB, select=select, timeout=args.timeout, partition=partition
        )
    except TriggerError as exc:
        print(f"mlops-assets: {exc}", file=sys.stderr)
        return 2
    line = f"run {result.run_id} {result.status} after {result.seconds:.0f} s: {result.url}"
    print(line, file=sys.stdout if result.success else sys.stderr)
    return 0 if result.success else 1


def _registry(settings: Settings) -> "ModelRegistry":
    from mlops_assets.home import prepare_home
    from mlops_assets.resources.mlflow import ModelRegistry

    prepare_home(settings)
    return ModelRegistry(
        tracking_uri=settings.tracking_uri, model_name=settings.registered_model_name
    )


def _who() -> str:
    import getpass

    return os.environ.get("MLOPS_USER") or getpass.getuser()


def _rollback(args: argparse.Namespace, settings: Settings) -> int:
    from mlops_assets.resources.mlflow import RegistryError

    registry = _registry(settings)
    try:
        old, new = registry.rollback(args.to, args.reason, _who())
    except RegistryError as exc:
        print(f"mlops-assets: {exc}", file=sys.stderr)
        return 2
    print(f"champion of {registry.model_name}: v{old} -> v{new} ({args.reason})")
    return 0


def _promote(args: argparse.Namespace, settings: Settings) -> int:
    from mlops_assets.resources.mlflow import RegistryError

    if not args.force:
        print(
            "mlops-assets: promote bypasses the gate; pass --force and --reason to do it",
            file=sys.stderr,
        )
        return 2
    registry = _registry(settings)
    try:
        old = registry.force_promote(args.version, args.reason, _who())
    except RegistryError as exc:
        print(f"mlops-assets: {exc}", file=sys.stderr)
        return 2
    before = f"v{old}" if old is not None else "none"
    print(f"champion of {registry.model_name}: {before} -> v{args.version} (forced: {args.reason})")
    return 0


def _schema_infer(args: argparse.Namespace, settings: Settings) -> int:
    from mlops_assets.quality.schema import infer_schema
    from mlops_assets.sources import UnreadableFileError, read_table_file

    path = Path(args.file)
    try:
        frame, _, _ = read_table_file(path)
        # Named like the file the schema is written to: the registered model is named after
        # that file (`<stem>_classifier`), and one name for both is less to explain.
        name = Path(args.output).stem if args.output else path.stem
        dataset = infer_schema(frame, args.target, name=name)
    except (OSError, UnreadableFileError, ValueError) as exc:
        print(f"mlops-assets: cannot infer a schema from {path}: {exc}", file=sys.stderr)
        return 2
    text = dataset.to_yaml()
    if args.output:
        Path(args.output).write_text(text)
        print(f"wrote {args.output}: {len(dataset.features)} features, target '{dataset.target}'")
    else:
        print(text)
    return 0


def _accept_labels(args: argparse.Namespace, settings: Settings) -> int:
    import dagster as dg

    from mlops_assets.assets.data import ACCEPTED_LABEL_MIX
    from mlops_assets.home import prepare_home
    from mlops_assets.partitions import LANDED_FILES
    from mlops_assets.quality.label_mix import acceptance_key
    from mlops_assets.sources import file_sha256

    path = Path(args.file)
    if not path.is_file():
        path = settings.landing_dir / args.file
    if not path.is_file():
        print(f"mlops-assets: no file {args.file} (nor in {settings.landing_dir})", file=sys.stderr)
        return 2
    key = acceptance_key(path.name, file_sha256(path))
    prepare_home(settings)
    with dg.DagsterInstance.get() as instance:
        # An observation on the file's partition of validated_dataset: the acceptance shows in
        # the asset's event log, with who said so and why, and validation reads it back.
        known = instance.has_dynamic_partition(LANDED_FILES, path.name)
        instance.report_runless_asset_event(
            dg.AssetObservation(
                "validated_dataset",
                partition=path.name if known else None,
                metadata={
                    ACCEPTED_LABEL_MIX: key,
                    "file": path.name,
                    "reason": args.reason,
                    "accepted_by": os.environ.get("USER", "unknown"),
                },
            )
        )
    print(
        f"accepted the class mix of {path.name} as it is (these bytes only: a changed file is "
        "judged again). Run `mlops-assets run` (or `mlops-assets trigger` against `make dev`) "
        "to validate it now."
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlops-assets",
        description="Data in, validated, trained, registered: Dagster assets and MLflow.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="materialize the whole asset graph headless")
    run.add_argument(
        "--log-level",
        help="also print Dagster's event log at this level (DEBUG, INFO, WARNING, ERROR); "
        "by default one line per step and a summary",
    )
    run.set_defaults(handler=_run)

    dev = commands.add_parser("dev", help="start the Dagster UI and daemon (dagster dev)")
    dev.add_argument("--host", default=os.environ.get("MLOPS_HOST", "127.0.0.1"))
    dev.add_argument("--port", type=int, default=int(os.environ.get("MLOPS_PORT", "3000")))
    dev.add_argument(
        "--mlflow-port",
        type=int,
        default=int(os.environ.get("MLOPS_MLFLOW_PORT", "5000")),
        help="port of the MLflow server started beside Dagster (default 5000)",
    )
    dev.add_argument(
        "--no-mlflow", action="store_true", help="do not start an MLflow server; runs use the store"
    )
    dev.set_defaults(handler=_dev)

    status = commands.add_parser(
        "status", help="the champion and the assets' last materializations"
    )
    status.add_argument("--json", action="store_true", help="print machine-readable JSON")
    status.set_defaults(handler=_status)

    trig = commands.add_parser(
        "trigger", help="launch a materialization on a running deployment and wait for it"
    )
    trig.add_argument(
        "--select",
        action="append",
        help="asset keys to materialize (repeat or comma-separate); default: the whole graph "
        "for --partition, else training and what follows it",
    )
    trig.add_argument(
        "--partition",
        metavar="FILE",
        help="the landed file (partition) to read and validate again; without it, the model is "
        "retrained on every file that passed",
    )
    trig.add_argument("--url", help="Dagster webserver URL (default: MLOPS_DAGSTER_UI_URL)")
    trig.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait")
    trig.set_defaults(handler=_trigger)

    revalidate = commands.add_parser(
        "revalidate",
        help="validate every landed file again (after a schema change), then retrain; with "
        "--url, as a Dagster backfill on a running deployment",
    )
    revalidate.add_argument("--url", help="Dagster webserver URL: launch a backfill there")
    revalidate.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait")
    revalidate.add_argument("--log-level", help="also print Dagster's event log at this level")
    revalidate.set_defaults(handler=_revalidate)

    rollback = commands.add_parser(
        "rollback", help="move `champion` back (default: to the previous champion)"
    )
    rollback.add_argument("--to", type=int, help="the version to make champion")
    rollback.add_argument("--reason", default="manual rollback", help="recorded as a tag")
    rollback.set_defaults(handler=_rollback)

    promote = commands.add_parser("promote", help="make VERSION champion, bypassing the gate")
    promote.add_argument("version", type=int)
    promote.add_argument("--force", action="store_true", help="required: the gate is bypassed")
    promote.add_argument("--reason", required=True, help="why; recorded as a tag")
    promote.set_defaults(handler=_promote)

    accept = commands.add_parser(
        "accept-labels",
        help="accept a landed file whose class mix was refused as a label shift",
    )
    accept.add_argument("file", help="the file's name in the landing folder, or its path")
    accept.add_argument("--reason", required=True, help="why the batch is right; recorded")
    accept.set_defaults(handler=_accept_labels)

    schema = commands.add_parser("schema", help="schemas for your own data")
    schema_commands = schema.add_subparsers(dest="schema_command", required=True)
    infer = schema_commands.add_parser("infer", help="infer a Pandera schema (YAML) from a file")
    infer.add_argument("file")
    infer.add_argument("--target", required=True, help="the label column")
    infer.add_argument("-o", "--output", help="write the YAML here instead of printing it")
    infer.set_defaults(handler=_schema_infer)
    return parser


def _quiet_library_warnings() -> None:
    # Beta/preview notices about dagster-mlflow and Output(data_version=...) are for us, not
    # for someone running the pipeline; they still show under `dagster dev` and in tests.
    warnings.filterwarnings("ignore", message=r".*is currently in beta.*")
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"pandera\..*")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _quiet_library_warnings()
    try:
        settings = Settings.from_env()
        return int(args.handler(args, settings))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
