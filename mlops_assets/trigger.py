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
