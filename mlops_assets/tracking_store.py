"""The MLflow tracking store: its experiment, and a fresh local store made beside start-up.

No Dagster here: `python -m mlops_assets.tracking_store` creates a store in a process of its own.
A new SQLite store runs MLflow's whole chain of schema migrations (about a second, plus a
second to import MLflow), all on one core. `mlops-assets run` starts that process first, so the
store is ready by the time the run's MLflow resource asks for it, while the other core loads
Dagster and the run.
"""

import fcntl
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# flock is per open file description, not per thread: threads take this lock as well.
_THREAD_LOCK = threading.RLock()


def configure_mlflow_environment() -> None:
    # MLflow 3.17 treats a folder with uv.lock as a uv project and copies the lock into every
    # model; the platform passes exact pip requirements instead.
    os.environ.setdefault("MLFLOW_UV_AUTO_DETECT", "false")
    os.environ.setdefault("MLFLOW_LOG_UV_FILES", "false")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def _sqlite_path(tracking_uri: str) -> Path | None:
    if tracking_uri.startswith("sqlite:///"):
        return Path(tracking_uri.removeprefix("sqlite:///"))
    return None


def _lock_path(database: Path) -> Path:
    return database.with_name(database.name + ".setup.lock")


@contextmanager
def setup_lock(tracking_uri: str) -> Iterator[None]:
    """Held while a local store is created or its experiment looked up: whoever comes second
    waits and then finds the store made, instead of migrating it at the same time."""
    database = _sqlite_path(tracking_uri)
    if database is None:
        yield
        return
    database.parent.mkdir(parents=True, exist_ok=True)
    with _THREAD_LOCK, _lock_path(database).open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _ensure(tracking_uri: str, name: str, artifact_location: str | None) -> str:
    from mlflow.tracking import MlflowClient

    configure_mlflow_environment()
    client = MlflowClient(tracking_uri=tracking_uri)
    existing = client.get_experiment_by_name(name)
    if existing is not None:
        return str(existing.experiment_id)
    if artifact_location:
        Path(artifact_location).mkdir(parents=True, exist_ok=True)
        artifact_location = Path(artifact_location).resolve().as_uri()
    return str(client.create_experiment(name, artifact_location=artifact_location))


def ensure_experiment(tracking_uri: str, name: str, artifact_location: str | None) -> str:
    """Create the experiment with its artifact location before anything else can create it."""
    with setup_lock(tracking_uri):
        return _ensure(tracking_uri, name, artifact_location)


def create_in_background(
    tracking_uri: str, name: str, artifact_location: str | None
) -> subprocess.Popen[bytes] | None:
    """Start creating a local store that does not exist yet, in a process of its own, and
    return that process (None when there is nothing to create or someone else is creating it).

    The process inherits the setup lock already taken here, so anything in this process that
    needs the store waits for it in `ensure_experiment`. Should it fail, that call creates the
    store itself and reports the error where the run shows it."""
    database = _sqlite_path(tracking_uri)
    if database is None or database.exists():
        return None
    database.parent.mkdir(parents=True, exist_ok=True)
    with _THREAD_LOCK:
        handle = _lock_path(database).open("a")
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return None
            # The lock is the open file's, shared with the child: closing our copy below leaves
            # it held until the child exits.
            return subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    __name__,
                    str(handle.fileno()),
                    tracking_uri,
                    name,
                    artifact_location or "",
                ],
                pass_fds=(handle.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        finally:
            handle.close()


def _main(argv: list[str]) -> int:
    # The parent took the setup lock and handed it over as this file descriptor: taking it
    # again here would wait for ourselves.
    _lock_fd, tracking_uri, name, artifact_location = argv
    _ensure(tracking_uri, name, artifact_location or None)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
