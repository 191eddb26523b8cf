"""The MLflow tracking store: its experiment, and a fresh local store made quickly.

No Dagster here. A new SQLite store runs MLflow's whole chain of schema migrations: 3 s of one
core on this 2-core machine, after 1.4-2 s to import MLflow. The chain gives the same empty schema
every time for a given MLflow release, so it runs once per release and user: the empty store it
leaves is kept in the user's cache (`MLOPS_CACHE_DIR`, by default `$XDG_CACHE_HOME/mlops-assets`
or `~/.cache/mlops-assets`), and a new MLOPS_HOME gets a copy of it, in milliseconds. Opening
the copy, MLflow finds its schema at the head revision and adds its Default experiment, as on a
store it made itself.

When there is no copy to take yet, `python -m mlops_assets.tracking_store` makes the store in a
process of its own: `mlops-assets run` starts that process first, so the store is ready by the
time the run's MLflow resource asks for it, while the other core loads Dagster and the run.
"""

import importlib.metadata
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_GUARD = threading.Lock()
_THREAD_LOCKS: dict[Path, threading.Lock] = {}
# Local stores this process has seen made (or waited for): no lock to pass through again.
_READY: set[str] = set()


def _thread_lock(path: Path) -> threading.Lock:
    """This process's lock for `path`: one per file, shared by every thread."""
    with _GUARD:
        return _THREAD_LOCKS.setdefault(path, threading.Lock())


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on `path` across processes (flock) and across this process's threads:
    flock is per open file description, not per thread. Not re-entrant: a thread that takes it
    twice waits for itself."""
    import fcntl  # POSIX only, and only for local stores: a remote store needs no lock

    path.parent.mkdir(parents=True, exist_ok=True)
    with _thread_lock(path), path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def configure_mlflow_environment() -> None:
    # MLflow 3.17 treats a folder with uv.lock as a uv project and copies the lock into every
    # model; the platform passes exact pip requirements instead.
    os.environ.setdefault("MLFLOW_UV_AUTO_DETECT", "false")
    os.environ.setdefault("MLFLOW_LOG_UV_FILES", "false")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a local SQLite store; None for any other store."""
    if tracking_uri.startswith("sqlite:///"):
        # Query parameters (`?timeout=20`) are the driver's, not part of the file's name.
        return Path(tracking_uri.removeprefix("sqlite:///").split("?", 1)[0])
    return None


def _lock_path(database: Path) -> Path:
    return database.with_name(database.name + ".setup.lock")


@contextmanager
def setup_lock(tracking_uri: str) -> Iterator[None]:
    """Held while a local store is created or its experiment looked up: whoever comes second
    waits and then finds the store made, instead of migrating it at the same time."""
    database = sqlite_path(tracking_uri)
    if database is None:
        yield
        return
    with file_lock(_lock_path(database)):
        yield


def wait_for_store(tracking_uri: str) -> None:
    """Before a client opens a local store: wait while another process is still creating it
    (MLflow migrates a new database on first open, with no lock of its own). Once per process."""
    if tracking_uri in _READY or sqlite_path(tracking_uri) is None:
        return
    with setup_lock(tracking_uri):
        _READY.add(tracking_uri)


def cache_dir() -> Path:
    """Where this user's reusable platform files live (the empty MLflow store)."""
    explicit = os.environ.get("MLOPS_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG spec says to ignore a relative path here.
    return (Path(base) if os.path.isabs(base) else Path.home() / ".cache") / "mlops-assets"


def store_template() -> Path:
    """The empty store of the installed MLflow release: its migrations are the release's."""
    release = importlib.metadata.version("mlflow")
    return cache_dir() / f"mlflow-{release}-empty-store.db"


def has_store_template() -> bool:
    """Whether this user has a usable empty store for the installed MLflow release."""
    return _complete(store_template())


def _complete(template: Path) -> bool:
    """A whole store at one schema revision: not a file cut short (a crash, a full disk)."""
    if not template.is_file():
        return False
    try:
        connection = sqlite3.connect(f"{template.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        return False
    try:
        revisions = connection.execute("SELECT version_num FROM alembic_version").fetchall()
    except sqlite3.Error:
        return False
    finally:
        connection.close()
    return len(revisions) == 1


def _build_template(template: Path) -> None:
    """MLflow's own creation of a store (its initial tables, then every migration), on a file
    of our own that takes the template's name only once complete and on disk: a reader never
    sees half a store, and two builders at once each finish their own copy."""
    from mlflow.store.db.utils import _initialize_tables, create_sqlalchemy_engine_with_retry

    template.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=template.parent, suffix=".building")
    os.close(handle)
    building = Path(name)
    try:
        engine = create_sqlalchemy_engine_with_retry(f"sqlite:///{building}")
        try:
            _initialize_tables(engine)
        finally:
            engine.dispose()
        with building.open("rb") as written:
            os.fsync(written.fileno())
        os.replace(building, template)
    finally:
        building.unlink(missing_ok=True)


def store_template_ready() -> Path:
    """This user's empty store for the installed MLflow release, built now if there is none
    (or only a broken one)."""
    template = store_template()
    if not _complete(template):
        _build_template(template)
    return template


def _copy_into_place(template: Path, database: Path) -> None:
    database.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=database.parent, suffix=".copying")
    os.close(handle)
    copying = Path(name)
    try:
        shutil.copyfile(template, copying)
        # A link, not a rename: it never replaces a store that a process outside the setup
        # lock (`mlflow ui` on the same file) made meanwhile; that one is kept.
        os.link(copying, database)
    except FileExistsError:
        pass
    finally:
        copying.unlink(missing_ok=True)


def place_empty_store(tracking_uri: str, build: bool = True) -> bool:
    """Give a local store that does not exist yet a copy of the cached empty store, building
    that first (with `build`) if this user has none for this MLflow release. True once the
    store exists. Call it holding the setup lock. Whatever goes wrong with the cache (a
    read-only home, a full disk) is said on stderr and leaves the store for MLflow to make in
    place, as it would without the cache, and to report there any error of its own."""
    database = sqlite_path(tracking_uri)
    if database is None or database.exists():
        return database is not None
    try:
        if build:
            template = store_template_ready()
        elif not has_store_template():
            return False
        else:
            template = store_template()
        _copy_into_place(template, database)
    except Exception as error:
        print(
            f"mlops-assets: no copy of the cached empty MLflow store ({error}); MLflow makes "
            f"{database} itself",
            file=sys.stderr,
        )
        return False
    return True


def _ensure(tracking_uri: str, name: str, artifact_location: str | None) -> str:
    from mlflow.tracking import MlflowClient

    configure_mlflow_environment()
    place_empty_store(tracking_uri)
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
        experiment_id = _ensure(tracking_uri, name, artifact_location)
        _READY.add(tracking_uri)
        return experiment_id


def setup_log(tracking_uri: str) -> Path | None:
    """Where the background creation of a local store writes what went wrong."""
    database = sqlite_path(tracking_uri)
    return None if database is None else database.with_name(database.name + ".setup.log")


def create_in_background(
    tracking_uri: str, name: str, artifact_location: str | None
) -> subprocess.Popen[bytes] | None:
    """Start creating a local store that does not exist yet, in a process of its own, and
    return that process (None when there is nothing to create, when a copy of the cached empty
    store made it here and now, or when someone else is creating it).

    The process inherits the setup lock already taken here, so anything in this process that
    opens the store waits for it (`ensure_experiment`, `wait_for_store`). Should it fail, the
    first of those creates the store itself and raises MLflow's error where the run shows it;
    the child's own output is in `setup_log`. It runs in a session of its own, so a Ctrl-C
    meant for the run does not stop it halfway through a migration."""
    import fcntl

    database = sqlite_path(tracking_uri)
    log = setup_log(tracking_uri)
    if database is None or log is None or database.exists():
        return None
    database.parent.mkdir(parents=True, exist_ok=True)
    lock = _lock_path(database)
    thread_lock = _thread_lock(lock)
    if not thread_lock.acquire(blocking=False):
        return None
    try:
        with lock.open("a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return None
            if place_empty_store(tracking_uri, build=False):
                # The run's MLflow resource creates the experiment, as on any existing store.
                return None
            # The lock belongs to the open file, which the child shares: closing our copy
            # leaves it held until the child exits.
            with log.open("w") as output:
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
                    stdout=output,
                    stderr=output,
                    start_new_session=True,
                )
    finally:
        thread_lock.release()


def _main(argv: list[str]) -> int:
    # The parent took the setup lock and handed it over as this file descriptor: taking it
    # again here would wait for ourselves.
    _lock_fd, tracking_uri, name, artifact_location = argv
    _ensure(tracking_uri, name, artifact_location or None)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
