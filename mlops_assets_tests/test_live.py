"""End to end against a live `mlops-assets dev` (webserver + daemon) on a temporary MLOPS_HOME:
a landed file becomes a new champion through the sensors alone; identical bytes launch nothing;
`mlops-assets trigger` launches through GraphQL and waits."""

import time
import warnings
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest

from mlops_assets.cli import main

from .live import Live, running_dev, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with running_dev(tmp_path_factory.mktemp("live")) as platform:
        yield platform


def test_landed_file_becomes_champion(live: Live, demo_frame: pd.DataFrame) -> None:
    assert live.champion() is None
    # Landed whole (a dot name, then a rename), as the README advises.
    staging = live.landing / ".batch1.csv.tmp"
    demo_frame.to_csv(staging, index=False)
    staging.rename(live.landing / "batch1.csv")
    version = wait_for(live.champion, 180, "a champion from the landed file")
    assert version == 1
    runs = live.runs()
    landing = [r for r in runs if {"key": "mlops/trigger", "value": "landing_sensor"} in r["tags"]]
    assert len(landing) == 1, [_shown(r) for r in runs]
    [run] = landing
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert tags["dagster/sensor_name"] == "landing_sensor"
    assert run["assetSelection"] is None or {"trained_model"} <= {
        "/".join(key["path"]) for key in run["assetSelection"]
    }
    if len(runs) > 1:
        # Seen once in CI (2026-12-01): declarative automation requested a run of its own while
        # the file's run was finishing. Not reproduced since; kept visible, not failed on.
        warnings.warn(f"runs besides the landing run: {[_shown(r) for r in runs]}", stacklevel=1)


def _shown(run: dict[str, Any]) -> tuple[Any, ...]:
    selection = [("/".join(k["path"])) for k in run["assetSelection"] or []]
    tags = {t["key"]: t["value"] for t in run["tags"]}
    return (run["status"], selection, tags, run["creationTime"], run["startTime"], run["endTime"])


def test_identical_bytes_launch_nothing(live: Live, demo_frame: pd.DataFrame) -> None:
    wait_for(lambda: all(r["status"] in {"SUCCESS", "FAILURE"} for r in live.runs()), 60, "runs")
    before = len(live.runs())
    demo_frame.to_csv(live.landing / "batch1.csv", index=False)  # same bytes, new mtime
    time.sleep(15)  # three turns of the sensor daemon's loop
    assert len(live.runs()) == before
    ticks = live.graphql(
        '{ sensorOrError(sensorSelector: {repositoryLocationName: "mlops_assets", '
        'repositoryName: "__repository__", sensorName: "landing_sensor"}) '
        "{ ... on Sensor { sensorState { ticks(limit: 3) { status skipReason } } } } }"
    )
    # The newest tick may still be running (STARTED) when asked: the newest one that ended.
    ended = [t for t in ticks["sensorOrError"]["sensorState"]["ticks"] if t["status"] != "STARTED"]
    tick = ended[0]
    assert tick["status"] == "SKIPPED"
    assert "no new, changed or removed files" in tick["skipReason"]


def test_trigger_launches_through_graphql_and_waits(
    live: Live, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["trigger", "--url", live.url, "--select", "raw_dataset"]) == 2
    assert "--partition FILE" in capsys.readouterr().err
    args = ["trigger", "--url", live.url, "--select", "raw_dataset", "--partition", "batch1.csv"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "SUCCESS" in out and f"{live.url}/runs/" in out


def test_revalidate_is_a_backfill_of_every_landed_file(
    live: Live, capsys: pytest.CaptureFixture[str]
) -> None:
    before = {r["runId"] for r in live.runs()}
    assert main(["revalidate", "--url", live.url, "--timeout", "300"]) == 0
    out = capsys.readouterr().out
    assert "backfill" in out and "SUCCESS" in out and "/overview/backfills/" in out
    runs = [r for r in live.runs() if r["runId"] not in before]
    tagged = [{t["key"]: t["value"] for t in r["tags"]} for r in runs]
    # The file's validation ran in a run of the backfill, for its partition, then training.
    assert any(t.get("dagster/partition") == "batch1.csv" for t in tagged), tagged
    assert all("dagster/backfill" in t for t in tagged), tagged
    assert {r["status"] for r in runs} == {"SUCCESS"}
