"""End to end against a live `mlops-assets dev` (webserver + daemon) on a temporary MLOPS_HOME:
a landed file becomes a new champion through the sensors alone; identical bytes launch nothing;
`mlops-assets trigger` launches through GraphQL and waits."""

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from mlops_assets.cli import main

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@dataclass
class Live:
    url: str
    home: Path
    landing: Path

    def graphql(self, query: str) -> Any:
        request = urllib.request.Request(
            f"{self.url}/graphql",
            data=json.dumps({"query": query}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())["data"]

    def runs(self) -> list[dict[str, Any]]:
        data = self.graphql(
            "{ runsOrError { ... on Runs { results { runId status tags { key value } } } } }"
        )
        return list(data["runsOrError"]["results"])

    def champion(self) -> int | None:
        # Read the registry's table directly: a poll that imports mlflow would compete with
        # the pipeline for the two cores.
        try:
            with sqlite3.connect(self.home / "mlflow.db") as db:
                row = db.execute(
                    "select version from registered_model_aliases where alias = 'champion'"
                ).fetchone()
        except sqlite3.Error:
            return None
        return int(row[0]) if row else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    base = tmp_path_factory.mktemp("live")
    port = _free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DAGSTER_HOME", "MLFLOW_TRACKING_URI", "MLOPS_SCHEMA"}
    }
    env.update(
        MLOPS_HOME=str(base / "home"),
        MLOPS_LANDING_DIR=str(base / "landing"),
        MLOPS_PROJECT_DIR=str(ROOT),
        MLOPS_DAGSTER_UI_URL=f"http://127.0.0.1:{port}",
    )
    (base / "landing").mkdir()
    log = (base / "dev.log").open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlops_assets.cli",
            "dev",
            "--port",
            str(port),
            "--mlflow-port",
            str(_free_port()),
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    platform = Live(f"http://127.0.0.1:{port}", base / "home", base / "landing")

    def up() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"dagster dev exited: {(base / 'dev.log').read_text()[-2000:]}")
        try:
            urllib.request.urlopen(f"{platform.url}/server_info", timeout=2).close()
            return True
        except OSError:
            return False

    try:
        _wait(up, 120, "the webserver")
        yield platform
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()


def test_landed_file_becomes_champion(live: Live, demo_frame: pd.DataFrame) -> None:
    assert live.champion() is None
    demo_frame.to_csv(live.landing / "batch1.csv", index=False)
    version = _wait(live.champion, 180, "a champion from the landed file")
    assert version == 1
    [run] = live.runs()
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert tags["mlops/trigger"] == "landing_sensor"
    assert tags["dagster/sensor_name"] == "landing_sensor"


def test_identical_bytes_launch_nothing(live: Live, demo_frame: pd.DataFrame) -> None:
    _wait(lambda: all(r["status"] in {"SUCCESS", "FAILURE"} for r in live.runs()), 60, "runs")
    before = len(live.runs())
    demo_frame.to_csv(live.landing / "batch1.csv", index=False)  # same bytes, new mtime
    time.sleep(15)  # three turns of the sensor daemon's loop
    assert len(live.runs()) == before
    ticks = live.graphql(
        '{ sensorOrError(sensorSelector: {repositoryLocationName: "mlops_assets", '
        'repositoryName: "__repository__", sensorName: "landing_sensor"}) '
        "{ ... on Sensor { sensorState { ticks(limit: 1) { status skipReason } } } } }"
    )
    [tick] = ticks["sensorOrError"]["sensorState"]["ticks"]
    assert tick["status"] == "SKIPPED"
    assert "no new or changed files" in tick["skipReason"]


def test_trigger_launches_through_graphql_and_waits(
    live: Live, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["trigger", "--url", live.url, "--select", "raw_dataset"]) == 0
    out = capsys.readouterr().out
    assert "SUCCESS" in out and f"{live.url}/runs/" in out
