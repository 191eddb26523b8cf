"""`mlops-assets trigger`: launch a materialization on a running deployment and wait for it.

Goes through Dagster's GraphQL API (the webserver), so a CI job can retrain and fail loudly."""

import time
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlparse

TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}


@dataclass
class TriggerResult:
    run_id: str
    status: str
    seconds: float
    url: str

    @property
    def success(self) -> bool:
        return self.status == "SUCCESS"


class TriggerError(RuntimeError):
    """The deployment could not be reached or refused the launch."""


def trigger(
    url: str,
    job: str,
    select: list[str] | None = None,
    timeout: float = 1800.0,
    poll: float = 2.0,
    headers: dict[str, str] | None = None,
    partition: str | None = None,
) -> TriggerResult:
    from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

    parsed = urlparse(url)
    if not parsed.hostname:
        raise TriggerError(f"not a URL: {url!r} (expected e.g. http://127.0.0.1:3000)")
    client = DagsterGraphQLClient(
        parsed.hostname,
        port_number=parsed.port,
        use_https=parsed.scheme == "https",
        path_prefix=parsed.path.rstrip("/"),
        headers=headers,
    )
    try:
        # A plain request first: its error says "connection refused", not a GraphQL dump.
        urllib.request.urlopen(f"{url.rstrip('/')}/server_info", timeout=10).close()
    except OSError as exc:
        raise TriggerError(f"cannot reach Dagster at {url}: {exc}") from exc
    started = time.monotonic()
    try:
        tags = {"mlops/trigger": "cli"}
        if partition:
            tags["dagster/partition"] = partition
        run_id = client.submit_job_execution(job, asset_selection=select or None, tags=tags)
    except DagsterGraphQLClientError as exc:
        raise TriggerError(f"{url} refused the launch: {exc}") from exc
    except Exception as exc:  # connection errors come from several libraries
        raise TriggerError(f"cannot reach Dagster at {url}: {exc}") from exc
    status = "QUEUED"
    while time.monotonic() - started < timeout:
        status = client.get_run_status(run_id).value
        if status in TERMINAL:
            break
        time.sleep(poll)
    else:
        raise TriggerError(f"run {run_id} still {status} after {timeout:.0f} s")
    return TriggerResult(
        run_id, status, time.monotonic() - started, f"{url.rstrip('/')}/runs/{run_id}"
    )


BACKFILL = """
mutation Backfill($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on PartitionSetNotFoundError { message }
    ... on InvalidStepError { invalidStepKey }
    ... on InvalidOutputError { invalidOutputName }
    ... on UnauthorizedError { message }
  }
}
"""
BACKFILL_STATUS = """
query Status($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status numPartitions }
    ... on PythonError { message }
  }
}
"""
# Backfill statuses that are still moving.
BACKFILL_MOVING = {"REQUESTED", "CANCELING", "FAILING"}


def backfill(
    url: str,
    assets: list[str],
    title: str,
    timeout: float = 1800.0,
    poll: float = 2.0,
    headers: dict[str, str] | None = None,
) -> TriggerResult:
    """A Dagster backfill of every partition of `assets` (and the unpartitioned assets among
    them, once, after), launched through the webserver and carried out by its daemon; waits
    for it to end. The result's status is the backfill's."""
    import json

    def graphql(query: str, variables: dict[str, object]) -> dict[str, object]:
        request = urllib.request.Request(
            f"{url.rstrip('/')}/graphql",
            data=json.dumps({"query": query, "variables": variables}).encode(),
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                body = json.loads(response.read())
        except OSError as exc:
            raise TriggerError(f"cannot reach Dagster at {url}: {exc}") from exc
        if body.get("errors"):
            raise TriggerError(f"{url} refused the backfill: {body['errors']}")
        return dict(body["data"])

    started = time.monotonic()
    params = {
        "assetSelection": [{"path": [name]} for name in assets],
        "allPartitions": True,
        "title": title,
        "tags": [{"key": "mlops/trigger", "value": "cli"}],
    }
    launched = graphql(BACKFILL, {"params": params})["launchPartitionBackfill"]
    assert isinstance(launched, dict)
    if launched.get("__typename") != "LaunchBackfillSuccess":
        raise TriggerError(f"{url} refused the backfill: {launched}")
    backfill_id = str(launched["backfillId"])
    status = "REQUESTED"
    while time.monotonic() - started < timeout:
        found = graphql(BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]
        assert isinstance(found, dict)
        status = str(found.get("status", found.get("__typename")))
        if status not in BACKFILL_MOVING:
            break
        time.sleep(poll)
    else:
        raise TriggerError(f"backfill {backfill_id} still {status} after {timeout:.0f} s")
    return TriggerResult(
        backfill_id,
        "SUCCESS" if status in {"COMPLETED", "COMPLETED_SUCCESS"} else status,
        time.monotonic() - started,
        f"{url.rstrip('/')}/overview/backfills/{backfill_id}",
    )
