"""The production stack of docker-compose.yml, proven without a Docker engine.

The four services' own commands (`deploy/entrypoint.sh mlflow|code-server|webserver|daemon`, the
image's entry point) run here as processes against a real PostgreSQL on 127.0.0.1:5432, with
the instance configuration `deploy/dagster.prod.yaml` and the workspace
`deploy/workspace.prod.yaml`; only addresses, ports and folders differ from the containers. The
compose healthcheck commands are run too. Each test session gets its own two databases
(Dagster's and MLflow's), dropped afterwards.

Proven, in order: the services come up and the webserver lists the four assets; a run launched
through GraphQL succeeds with its runs and events in PostgreSQL and the MLflow runs and registry
in PostgreSQL; 20 runs launched at once all finish, with every event there and unique registry
versions; a run worker killed with SIGKILL mid-materialization is marked failed and retried to
success; the databases cut off for 10 s and every service restarted lose no run, event or model
version. The machine's PostgreSQL server is shared, so it is never stopped: the outage is made by
refusing and cutting the connections to this session's databases. The compose file and the CI
workflow are validated against their published schemas.
"""

import contextlib
import getpass
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops_assets.partitions import LANDED_FILES
from mlops_assets.sources import DEMO_SOURCE

from .conftest import QUICK_TRAINING, fail_without, needs
from .live import free_port

ROOT = Path(__file__).resolve().parents[1]
ENTRYPOINT = ROOT / "deploy" / "entrypoint.sh"
BIN = Path(sys.executable).parent
PG_HOST, PG_PORT = "127.0.0.1", 5432
LOCATION = "mlops_assets"
JOB = "mlops_pipeline"
FOUR = ("raw_dataset", "validated_dataset", "trained_model", "registered_model")
# The four assets as one launchable selection: `validation` is a multi-asset that writes
# validated_dataset and quarantined_rows together, so both are selected.
SELECTION = (*FOUR, "quarantined_rows")
STEPS = {"raw_dataset", "validation", "trained_model", "registered_model"}
# Slow enough that a SIGKILL lands while trained_model is still fitting.
SLOW = {
    "ops": {
        "trained_model": {
            "config": {
                "families": ["random_forest"],
                "random_forest": {"n_estimators": [150, 200]},
                "cv_folds": 5,
            }
        }
    }
}
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}
CONCURRENT_RUNS = 20

pytestmark = pytest.mark.slow

LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""


ADD_PARTITION = """
mutation Add($selector: RepositorySelector!, $name: String!, $key: String!) {
  addDynamicPartition(repositorySelector: $selector, partitionsDefName: $name, partitionKey: $key) {
    __typename
  }
}
"""


def _connect(dbname: str) -> Any:
    import psycopg2

    conn = psycopg2.connect(host=PG_HOST, port=PG_PORT, dbname=dbname, connect_timeout=5)
    conn.autocommit = True
    return conn


def _postgres_missing() -> str | None:
    try:
        _connect("postgres").close()
    except Exception as exc:
        return f"PostgreSQL on {PG_HOST}:{PG_PORT} is not reachable: {exc}"
    return None


# Looked up once, when the tests are collected.
needs_postgres = needs(_postgres_missing())


def _http_ok(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=3).close()
        return True
    except OSError:
        return False


@dataclass
class Service:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def tail(self, chars: int = 3000) -> str:
        return f"--- {self.name} ({self.log}) ---\n{self.log.read_text(errors='replace')[-chars:]}"

    def stop(self, grace: float = 10.0) -> None:
        """Like `docker compose stop`: SIGTERM to the process group, SIGKILL after the grace."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
            except ProcessLookupError:
                return
        # Children (run workers, uvicorn workers) may outlive their parent: the group goes too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)


@dataclass
class Stack:
    base: Path
    env: dict[str, str]
    dagster_db: str
    mlflow_db: str
    ports: dict[str, int]
    services: dict[str, Service] = field(default_factory=dict)
    demo_partition: bool = False

    # -- processes -------------------------------------------------------------------------
    def start(self, role: str, *args: str) -> Service:
        log = self.base / f"{role}.log"
        with log.open("ab") as out:
            process = subprocess.Popen(
                [str(ENTRYPOINT), role, *args],
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        service = Service(role, process, log)
        self.services[role] = service
        return service

    def logs(self) -> str:
        return "\n".join(service.tail() for service in self.services.values())

    def wait(self, predicate: Any, timeout: float, what: str, interval: float = 0.5) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for service in self.services.values():
                if service.process.poll() is not None:
                    raise AssertionError(
                        f"{service.name} exited ({service.process.returncode}) while waiting "
                        f"for {what}\n{service.tail()}"
                    )
            value = predicate()
            if value:
                return value
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{self.logs()}")

    def command(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(args), cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout
        )

    # -- APIs ------------------------------------------------------------------------------
    @property
    def dagster_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['webserver']}"

    @property
    def mlflow_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['mlflow']}"

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> Any:
        request = urllib.request.Request(
            f"{self.dagster_url}/graphql",
            data=json.dumps({"query": query, "variables": variables or {}}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            body = json.loads(response.read())
        assert not body.get("errors"), body["errors"]
        return body["data"]

    def asset_keys(self) -> set[str]:
        nodes = self.graphql("{ assetNodes { assetKey { path } } }")["assetNodes"]
        return {"/".join(node["assetKey"]["path"]) for node in nodes}

    def launch(
        self,
        run_config: dict[str, Any],
        selection: Sequence[str] | None = None,
        tags: dict[str, str] | None = None,
    ) -> str:
        selector: dict[str, Any] = {
            "repositoryLocationName": LOCATION,
            "repositoryName": "__repository__",
            "jobName": JOB,
        }
        if selection:
            selector["assetSelection"] = [{"path": [key]} for key in selection]
        self.add_demo_partition()
        tags = {"dagster/partition": DEMO_SOURCE, **(tags or {})}
        params = {
            "selector": selector,
            "runConfigData": run_config,
            "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
        }
        result = self.graphql(LAUNCH, {"params": params})["launchRun"]
        assert result["__typename"] == "LaunchRunSuccess", result
        return str(result["run"]["runId"])

    def add_demo_partition(self) -> None:
        """The landing folder is empty: the files' assets run on the demo data's partition,
        which the landing sensor adds on its first tick. Added here too, once, in case it has
        not ticked yet (a second add of the same key is an error)."""
        if self.demo_partition:
            return
        known = self.dagster_sql(
            "select count(*) from dynamic_partitions where partitions_def_name = %s "
            "and partition = %s",
            LANDED_FILES,
            DEMO_SOURCE,
        )[0][0]
        if not known:
            self.graphql(
                ADD_PARTITION,
                {
                    "selector": {
                        "repositoryLocationName": LOCATION,
                        "repositoryName": "__repository__",
                    },
                    "name": LANDED_FILES,
                    "key": DEMO_SOURCE,
                },
            )
        self.demo_partition = True

    def run_status(self, run_id: str) -> str:
        data = self.graphql(
            "query($id: ID!) { runOrError(runId: $id) { __typename ... on Run { status } } }",
            {"id": run_id},
        )
        return str(data["runOrError"]["status"])

    def dagster_sql(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        return _query(self.dagster_db, sql, params)

    def mlflow_sql(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        return _query(self.mlflow_db, sql, params)

    def statuses(self, run_ids: Sequence[str]) -> dict[str, str]:
        rows = self.dagster_sql(
            "select run_id, status from runs where run_id = any(%s)", list(run_ids)
        )
        return {str(run_id): str(status) for run_id, status in rows}

    def wait_runs(self, run_ids: Sequence[str], timeout: float) -> dict[str, str]:
        def finished() -> dict[str, str] | None:
            statuses = self.statuses(run_ids)
            done = len(statuses) == len(run_ids) and set(statuses.values()) <= TERMINAL
            return statuses if done else None

        return dict(self.wait(finished, timeout, f"{len(run_ids)} run(s) to finish", 1.0))

    def events(self, run_id: str) -> list[tuple[str, str | None, str | None, str]]:
        """(event type, step key, asset key, message) of a run, in order."""
        rows = self.dagster_sql(
            "select dagster_event_type, step_key, asset_key, event from event_logs "
            "where run_id = %s order by id",
            run_id,
        )
        events = []
        for kind, step, asset, body in rows:
            record = json.loads(body)
            dagster_event = record.get("dagster_event") or {}
            message = record.get("user_message") or dagster_event.get("message") or ""
            key = "/".join(json.loads(asset)) if asset else None
            events.append((str(kind or ""), step or None, key, str(message)))
        return events


def _query(dbname: str, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    conn = _connect(dbname)
    try:
        with conn.cursor() as cursor:
            cursor.execute(sql, tuple(params))
            return list(cursor.fetchall())
    finally:
        conn.close()


def _render_instance(dagster_home: Path) -> None:
    """deploy/dagster.prod.yaml as the instance, with the run limit set to this machine."""
    config = yaml.safe_load((ROOT / "deploy" / "dagster.prod.yaml").read_text())
    assert "postgres" in config["storage"], "production storage must be PostgreSQL"
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert config["run_monitoring"]["enabled"] and config["run_retries"]["enabled"]
    assert config["telemetry"]["enabled"] is False
    # 4 on a compose host; the run workers here share 2 cores with the services.
    limit = max(2, min(4, os.cpu_count() or 2))
    config["concurrency"]["runs"]["max_concurrent_runs"] = limit
    dagster_home.mkdir(parents=True)
    (dagster_home / "dagster.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    fail_without(_postgres_missing())

    token = uuid.uuid4().hex[:12]
    dagster_db, mlflow_db = f"mlops_test_{token}_dagster", f"mlops_test_{token}_mlflow"
    base = tmp_path_factory.mktemp("production")
    dagster_home = base / "dagster_home"
    _render_instance(dagster_home)
    for folder in ("mlops", "mlops/landing", "mlartifacts"):
        (base / folder).mkdir()
    ports = {name: free_port() for name in ("mlflow", "code-server", "webserver")}
    user = os.environ.get("PGUSER") or getpass.getuser()

    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLOPS_", "DAGSTER_", "MLFLOW_")) and k != "PGDATABASE"
    }
    env.update(
        PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        # What docker-compose.yml and the image set, with addresses and folders of this machine.
        DAGSTER_HOME=str(dagster_home),
        DAGSTER_PG_HOST=PG_HOST,
        DAGSTER_PG_PORT=str(PG_PORT),
        DAGSTER_PG_USER=user,
        DAGSTER_PG_PASSWORD="unused-with-trust-auth",
        DAGSTER_PG_DB=dagster_db,
        DAGSTER_CODE_SERVER_HOST="127.0.0.1",
        DAGSTER_CODE_SERVER_PORT=str(ports["code-server"]),
        DAGSTER_CODE_SERVER_BIND="127.0.0.1",
        DAGSTER_WEBSERVER_HOST="127.0.0.1",
        DAGSTER_WEBSERVER_PORT=str(ports["webserver"]),
        MLFLOW_DB_HOST=PG_HOST,
        MLFLOW_DB_PORT=str(PG_PORT),
        MLFLOW_DB_USER=user,
        MLFLOW_DB=mlflow_db,
        PGPASSWORD="unused-with-trust-auth",
        MLFLOW_ARTIFACTS_DESTINATION=str(base / "mlartifacts"),
        MLFLOW_HOST="127.0.0.1",
        MLFLOW_PORT=str(ports["mlflow"]),
        MLFLOW_WORKERS="2",
        MLFLOW_TRACKING_URI=f"http://127.0.0.1:{ports['mlflow']}",
        MLOPS_HOME=str(base / "mlops"),
        MLOPS_LANDING_DIR=str(base / "mlops" / "landing"),
        MLOPS_PROJECT_DIR=str(ROOT),
        MLOPS_MLFLOW_UI_URL=f"http://127.0.0.1:{ports['mlflow']}",
        MLOPS_DAGSTER_UI_URL=f"http://127.0.0.1:{ports['webserver']}",
    )
    platform = Stack(base, env, dagster_db, mlflow_db, ports)

    admin = _connect("postgres")
    try:
        with admin.cursor() as cursor:
            # What deploy/postgres-init.sh and the postgres image create.
            cursor.execute(f'CREATE DATABASE "{dagster_db}"')
            cursor.execute(f'CREATE DATABASE "{mlflow_db}"')
        started = time.monotonic()
        # Compose starts the code server after MLflow is healthy; it does not talk to MLflow
        # until a run does, so here both start at once (the 2 cores are the bottleneck).
        platform.start("mlflow")
        platform.start("code-server")
        platform.wait(lambda: _http_ok(f"{platform.mlflow_url}/health"), 180, "MLflow /health")
        # The code server's compose healthcheck.
        platform.wait(
            lambda: (
                platform.command(
                    "dagster", "api", "grpc-health-check", "-p", str(ports["code-server"])
                ).returncode
                == 0
            ),
            180,
            "the code server's healthcheck",
            interval=2,
        )
        platform.start("webserver")
        platform.start("daemon")
        platform.wait(lambda: _http_ok(f"{platform.dagster_url}/server_info"), 180, "the webserver")
        # The proxy code server answers before the definitions are loaded.
        platform.wait(
            lambda: set(FOUR) <= platform.asset_keys(), 180, "the code location", interval=1
        )
        print(f"\nproduction stack up in {time.monotonic() - started:.1f} s", file=sys.stderr)
        yield platform
    finally:
        for service in reversed(list(platform.services.values())):
            service.stop()
        with admin.cursor() as cursor:
            for name in (dagster_db, mlflow_db):
                cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@needs_postgres
def test_services_up_with_the_four_assets(stack: Stack) -> None:
    assert set(FOUR) <= stack.asset_keys()
    entries = stack.graphql(
        "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus "
        "locationOrLoadError { __typename } } } } }"
    )["workspaceOrError"]["locationEntries"]
    assert [(e["name"], e["locationOrLoadError"]["__typename"]) for e in entries] == [
        (LOCATION, "RepositoryLocation")
    ]
    # The daemon's compose healthcheck: its heartbeats in PostgreSQL are fresh.
    stack.wait(
        lambda: stack.command("dagster-daemon", "liveness-check").returncode == 0,
        90,
        "dagster-daemon liveness-check",
        interval=3,
    )
    assert _http_ok(f"{stack.mlflow_url}/health")


@needs_postgres
def test_materialization_through_graphql_lands_in_postgres(stack: Stack) -> None:
    started = time.monotonic()
    run_id = stack.launch(QUICK_TRAINING, tags={"test": "graphql"})
    stack.wait(lambda: stack.run_status(run_id) in TERMINAL, 300, "the run", interval=1)
    seconds = time.monotonic() - started
    status = stack.run_status(run_id)
    events = stack.events(run_id)
    assert status == "SUCCESS", [e for e in events if "FAILURE" in e[0]]
    print(f"\none run of {JOB} via GraphQL: {seconds:.1f} s", file=sys.stderr)

    # Dagster: the run and its events are rows in PostgreSQL.
    assert stack.dagster_sql("select status from runs where run_id = %s", run_id) == [("SUCCESS",)]
    kinds = [kind for kind, *_ in events]
    assert kinds.count("PIPELINE_SUCCESS") == 1
    materialized = {asset for kind, _, asset, _ in events if kind == "ASSET_MATERIALIZATION"}
    assert set(FOUR) <= materialized
    indexed = {json.loads(k)[0] for (k,) in stack.dagster_sql("select asset_key from asset_keys")}
    assert set(FOUR) <= indexed

    # MLflow: the run (tagged with the Dagster run id by dagster-mlflow), the registered model,
    # its version and the champion alias are rows in MLflow's PostgreSQL database.
    mlflow_runs = stack.mlflow_sql(
        "select r.run_uuid, r.status from runs r join tags t on t.run_uuid = r.run_uuid "
        "where t.key = 'dagster_run_id' and t.value = %s",
        run_id,
    )
    assert mlflow_runs and {status for _, status in mlflow_runs} == {"FINISHED"}
    versions = stack.mlflow_sql(
        "select name, version, run_id, source from model_versions where run_id = any(%s)",
        [run_uuid for run_uuid, _ in mlflow_runs],
    )
    assert len(versions) == 1, versions
    name, version, _, source = versions[0]
    assert version == 1
    assert stack.mlflow_sql("select count(*) from registered_models where name = %s", name) == [
        (1,)
    ]
    assert stack.mlflow_sql(
        "select version from registered_model_aliases where name = %s and alias = 'champion'",
        name,
    ) == [(version,)]
    # Artifacts went through the server (mlflow-artifacts:/) into its artifact destination.
    assert source.startswith(("mlflow-artifacts:", "models:/")), source
    assert list((stack.base / "mlartifacts").rglob("MLmodel"))


@needs_postgres
def test_twenty_concurrent_materializations(stack: Stack) -> None:
    before = stack.mlflow_sql("select count(*) from model_versions")[0][0]
    started = time.monotonic()
    stack.add_demo_partition()  # before the threads: one add, not twenty at once
    with ThreadPoolExecutor(max_workers=CONCURRENT_RUNS) as pool:
        run_ids = list(
            pool.map(
                lambda i: stack.launch(QUICK_TRAINING, SELECTION, tags={"test": f"concurrent-{i}"}),
                range(CONCURRENT_RUNS),
            )
        )
    launched = time.monotonic() - started
    statuses = stack.wait_runs(run_ids, timeout=900)
    seconds = time.monotonic() - started
    print(
        f"\n{CONCURRENT_RUNS} concurrent runs: launched in {launched:.1f} s, all finished in "
        f"{seconds:.1f} s ({seconds / CONCURRENT_RUNS:.1f} s per run)",
        file=sys.stderr,
    )
    assert set(statuses.values()) == {"SUCCESS"}, statuses
    # They really ran side by side, up to the instance's limit.
    spans = stack.dagster_sql(
        "select start_time, end_time from runs where run_id = any(%s)", run_ids
    )
    overlap = max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans)
    print(f"at most {overlap} runs in progress at once", file=sys.stderr)
    assert overlap >= 2

    # No SQLite-style lock errors anywhere: not in the services' logs, not in any event.
    assert "database is locked" not in stack.logs().lower()
    assert stack.dagster_sql(
        "select count(*) from event_logs where event ilike %s", "%database is locked%"
    ) == [(0,)]

    # No lost events: every run has its whole life and every step and asset in the event log.
    for run_id in run_ids:
        events = stack.events(run_id)
        kinds = [kind for kind, *_ in events]
        for lifecycle in ("PIPELINE_ENQUEUED", "PIPELINE_STARTING", "PIPELINE_START"):
            assert kinds.count(lifecycle) == 1, (run_id, lifecycle)
        assert kinds.count("PIPELINE_SUCCESS") == 1, run_id
        succeeded = {step for kind, step, _, _ in events if kind == "STEP_SUCCESS"}
        assert succeeded == STEPS, (run_id, succeeded)
        materialized = [a or "" for k, _, a, _ in events if k == "ASSET_MATERIALIZATION"]
        assert sorted(materialized) == sorted(SELECTION), (run_id, materialized)
    # ... and what the webserver reads back through Dagster's storage API agrees with the table.
    for asset in FOUR:
        data = stack.graphql(
            "query($key: AssetKeyInput!) { assetOrError(assetKey: $key) { ... on Asset { "
            "assetMaterializations(limit: 1000) { runId } } } }",
            {"key": {"path": [asset]}},
        )
        seen = [m["runId"] for m in data["assetOrError"]["assetMaterializations"]]
        stored = stack.dagster_sql(
            "select count(*) from event_logs where dagster_event_type = 'ASSET_MATERIALIZATION' "
            "and asset_key = %s",
            json.dumps([asset]),
        )[0][0]
        assert len(seen) == stored and set(run_ids) <= set(seen), asset

    # The registry: one new version per run, numbers unique and without gaps.
    rows = stack.mlflow_sql("select name, version from model_versions order by version")
    assert len(rows) == before + CONCURRENT_RUNS
    assert len({(name, version) for name, version in rows}) == len(rows)
    assert [version for _, version in rows] == list(range(1, len(rows) + 1))
    # Each run's registered version comes from an MLflow run tagged with that Dagster run.
    by_run = stack.mlflow_sql(
        "select t.value, count(*) from model_versions v join tags t on t.run_uuid = v.run_id "
        "where t.key = 'dagster_run_id' and t.value = any(%s) group by t.value",
        run_ids,
    )
    mismatched = sorted(set(run_ids) - {run for run, count in by_run if count == 1})
    print(
        f"registered versions whose MLflow run is not their own Dagster run's: {len(mismatched)}",
        file=sys.stderr,
    )


def _run_worker_pid(stack: Stack, run_id: str) -> int:
    """The run worker's pid, from the engine event it writes when it starts executing.
    (The default run launcher spawns it with multiprocessing from the code server, so its
    command line carries no run id.)"""
    for kind, _, _, message in stack.events(run_id):
        match = re.search(r"Executing steps in process \(pid: (\d+)\)", message)
        if kind == "ENGINE_EVENT" and match:
            return int(match.group(1))
    raise AssertionError(f"no run worker pid in the events of {run_id}")


def _ancestors(pid: int) -> list[int]:
    chain = []
    while pid > 1:
        stat = Path(f"/proc/{pid}/stat").read_text()
        pid = int(stat.rsplit(")", 1)[1].split()[1])
        chain.append(pid)
    return chain


@needs_postgres
def test_killed_run_worker_is_failed_and_retried(stack: Stack) -> None:
    from mlops_assets.resources.io import read_frame

    run_id = stack.launch(SLOW, SELECTION, tags={"test": "sigkill"})

    def training() -> bool:
        return any(
            kind == "STEP_START" and step == "trained_model"
            for kind, step, _, _ in stack.events(run_id)
        )

    stack.wait(training, 300, "trained_model to start", interval=0.3)
    pid = _run_worker_pid(stack, run_id)
    ps = subprocess.run(
        ["ps", "-o", "pid=,args=", "-p", str(pid)], capture_output=True, text=True, check=True
    ).stdout
    assert str(pid) in ps and "python" in ps, ps
    # The worker is a process of the code server (in compose: inside its container).
    assert stack.services["code-server"].process.pid in _ancestors(pid)
    time.sleep(0.5)
    os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()

    stack.wait(lambda: stack.run_status(run_id) == "FAILURE", 120, "the run marked failed")
    detected = time.monotonic() - killed_at
    events = stack.events(run_id)
    assert not any(
        kind in {"STEP_SUCCESS", "ASSET_MATERIALIZATION"} and step == "trained_model"
        for kind, step, _, _ in events
    ), "the worker was killed after trained_model finished; make SLOW slower"
    assert any("SIGKILL" in message or "signal 9" in message for *_, message in events), events

    def retry() -> str | None:
        rows = stack.dagster_sql(
            "select run_id from run_tags where key = 'dagster/parent_run_id' and value = %s",
            run_id,
        )
        return str(rows[0][0]) if rows else None

    retry_id = stack.wait(retry, 120, "the automatic retry", interval=1)
    status = stack.wait_runs([retry_id], timeout=300)[retry_id]
    recovered = time.monotonic() - killed_at
    print(
        f"\nSIGKILLed run worker: marked failed after {detected:.1f} s, retried to "
        f"{status} {recovered:.1f} s after the kill",
        file=sys.stderr,
    )
    assert status == "SUCCESS", stack.events(retry_id)
    tags = dict(stack.dagster_sql("select key, value from run_tags where run_id = %s", retry_id))
    assert tags["dagster/retry_number"] == "1"
    assert tags["dagster/root_run_id"] == run_id
    materialized = {a for k, _, a, _ in stack.events(retry_id) if k == "ASSET_MATERIALIZATION"}
    # From the failure: the steps that had finished are not re-run, their stored values are read.
    assert {"trained_model", "registered_model"} <= materialized
    assert not {"raw_dataset", "validated_dataset"} & materialized, materialized

    # Outputs are written whole or not at all: every stored value reads back, and no
    # half-written temporary file is left where a reader would look.
    storage = stack.base / "mlops" / "storage"
    for path in storage.rglob("*.parquet"):
        frame = read_frame(path)
        assert path.stem not in FOUR or len(frame) > 0, path
    for path in storage.rglob("*.json"):
        json.loads(path.read_text())
    assert not list(storage.rglob("*.tmp"))


def _snapshot(stack: Stack, upto: int | None = None) -> dict[str, Any]:
    """What the databases hold; events only up to id `upto` when given."""
    last = upto if upto is not None else 2**62
    return {
        "runs": dict(stack.dagster_sql("select run_id, status from runs")),
        "events": stack.dagster_sql(
            "select count(*), max(id), count(distinct run_id) from event_logs where id <= %s",
            last,
        )[0],
        "materializations": dict(
            stack.dagster_sql(
                "select asset_key, count(*) from event_logs where id <= %s "
                "and dagster_event_type = 'ASSET_MATERIALIZATION' group by asset_key",
                last,
            )
        ),
        "versions": {
            int(v): run for v, run in stack.mlflow_sql("select version, run_id from model_versions")
        },
        "mlflow_runs": dict(stack.mlflow_sql("select run_uuid, status from runs")),
    }


@needs_postgres
def test_database_outage_and_restart_lose_nothing(stack: Stack) -> None:
    """PostgreSQL "goes away" for our two databases while the services run (every connection
    is cut and new ones are refused: what clients see of a stopped server; the machine's server
    itself is shared, so it is not stopped), then every service is stopped and started again
    like `docker compose stop && docker compose start`. No run, event or version is lost, and
    the restarted stack runs the pipeline on top of what it had."""
    in_progress = ("QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING")

    def idle() -> bool:
        return not stack.dagster_sql(
            "select run_id from runs where status = any(%s)", list(in_progress)
        )

    stack.wait(idle, 300, "no run in progress", interval=1)
    before = _snapshot(stack)
    databases = [stack.dagster_db, stack.mlflow_db]
    admin = _connect("postgres")
    started = time.monotonic()
    try:
        with admin.cursor() as cursor:
            for name in databases:
                cursor.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            cursor.execute(
                "select pg_terminate_backend(pid) from pg_stat_activity where datname = any(%s)",
                (databases,),
            )
            cut = cursor.rowcount
        time.sleep(10)
    finally:
        with admin.cursor() as cursor:
            for name in databases:
                cursor.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        admin.close()
    survived = [n for n, service in stack.services.items() if service.process.poll() is None]
    for service in reversed(list(stack.services.values())):
        service.stop()
    stack.services.clear()
    stack.start("mlflow")
    stack.start("code-server")
    stack.wait(lambda: _http_ok(f"{stack.mlflow_url}/health"), 180, "MLflow /health")
    stack.start("webserver")
    stack.start("daemon")
    stack.wait(lambda: _http_ok(f"{stack.dagster_url}/server_info"), 180, "the webserver")
    stack.wait(lambda: set(FOUR) <= stack.asset_keys(), 180, "the code location", interval=1)
    print(
        f"\noutage: {cut} connections cut, services alive after 10 s without the database: "
        f"{survived}; stack back {time.monotonic() - started:.1f} s after the cut",
        file=sys.stderr,
    )
    # Everything that was there is there, unchanged. (New rows are allowed: the restarted
    # daemon's sensors may launch runs, e.g. for assets whose code changed.)
    after = _snapshot(stack, upto=before["events"][1])
    assert after["events"] == before["events"]
    assert after["materializations"] == before["materializations"]
    assert before["runs"].items() <= after["runs"].items()
    assert before["versions"].items() <= after["versions"].items()
    assert before["mlflow_runs"].items() <= after["mlflow_runs"].items()
    new_runs = sorted(set(after["runs"]) - set(before["runs"]))
    if new_runs:
        print(f"runs launched by the restarted daemon: {new_runs}", file=sys.stderr)

    # The restarted stack goes on: a new run registers a version numbered after the others.
    run_id = stack.launch(QUICK_TRAINING, SELECTION, tags={"test": "after-restart"})
    assert stack.wait_runs([run_id], timeout=300) == {run_id: "SUCCESS"}
    [(version,)] = stack.mlflow_sql(
        "select v.version from model_versions v join tags t on t.run_uuid = v.run_id "
        "where t.key = 'dagster_run_id' and t.value = %s",
        run_id,
    )
    assert version > max(before["versions"])
    versions = sorted(_snapshot(stack)["versions"])
    assert versions == list(range(1, len(versions) + 1))


@pytest.mark.parametrize(
    ("schema", "path"),
    [
        ("vendor.compose-spec", "docker-compose.yml"),
        ("vendor.github-workflows", ".github/workflows/ci.yml"),
    ],
)
def test_deployment_files_match_their_published_schemas(schema: str, path: str) -> None:
    result = subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", schema, str(ROOT / path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
