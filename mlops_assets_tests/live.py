"""A live `mlops-assets dev` (Dagster webserver + daemon, MLflow server) on free ports and a
temporary MLOPS_HOME, shared by the end-to-end tests (test_live.py, test_browser.py) and
benchmarks/automation_latency.py."""

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# Variables of the developer's shell that would point the platform away from its temporary home.
_OUTSIDE = {
    "DAGSTER_HOME",
    "MLFLOW_TRACKING_URI",
    "MLOPS_SCHEMA",
    "MLOPS_MODEL_NAME",
    "MLOPS_MLFLOW_UI_URL",
    "MLOPS_DAGSTER_UI_URL",
}


@dataclass
class Live:
    url: str
    home: Path
    landing: Path
    mlflow_url: str = ""

    def graphql(self, query: str) -> Any:
        request = urllib.request.Request(
            f"{self.url}/graphql",
            data=json.dumps({"query": query}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())["data"]

    def runs(self) -> list[dict[str, Any]]:
        """Newest first, with their tags and timestamps."""
        data = self.graphql(
            "{ runsOrError { ... on Runs { results { runId status tags { key value } "
            "creationTime startTime endTime assetSelection { path } } } } }"
        )
        return list(data["runsOrError"]["results"])

    def champion(self) -> int | None:
        # Read the registry's table directly: a poll that imports mlflow would compete with
        # the pipeline for the two cores.
        try:
            with sqlite3.connect(self.home / "mlflow.db", timeout=1) as db:
                row = db.execute(
                    "select version from registered_model_aliases where alias = 'champion'"
                ).fetchone()
        except sqlite3.Error:
            return None
        return int(row[0]) if row else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@contextmanager
def running_dev(base: Path, env_overrides: Mapping[str, str] | None = None) -> Iterator[Live]:
    """`mlops-assets dev` with an empty landing folder under `base`, up once GraphQL lists the
    code location's assets; the whole process group is ended afterwards. `env_overrides` are
    applied last (a benchmark profile's settings, its own DAGSTER_HOME)."""
    port, mlflow_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in _OUTSIDE}
    env.update(
        MLOPS_HOME=str(base / "home"),
        MLOPS_LANDING_DIR=str(base / "landing"),
        MLOPS_PROJECT_DIR=str(ROOT),
        **(env_overrides or {}),
    )
    (base / "landing").mkdir()
    log_path = base / "dev.log"
    command = [sys.executable, "-m", "mlops_assets.cli", "dev", "--port", str(port)]
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [*command, "--mlflow-port", str(mlflow_port)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        live = Live(
            f"http://127.0.0.1:{port}",
            base / "home",
            base / "landing",
            mlflow_url=f"http://127.0.0.1:{mlflow_port}",
        )

        def up() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"mlops-assets dev exited: {log_path.read_text()[-2000:]}")
            try:
                return bool(live.graphql("{ assetNodes { id } }")["assetNodes"])
            except OSError:
                return False

        try:
            wait_for(up, 120, "the webserver and the code location")
            yield live
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            with suppress(subprocess.TimeoutExpired):
                process.wait(timeout=30)
            # dagster dev's children (daemon, code server, run workers) can outlive it after
            # SIGTERM: end the whole session so no process keeps the ports or the store.
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
