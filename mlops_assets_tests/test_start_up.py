"""Work moved off a run's path: a fresh MLflow store copied from the user's cached empty one
(or made by a process of its own the first time), the imports that follow training done on a
thread while it fits, and the garbage collector tuned for a platform process."""

import fcntl
import os
import re
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from mlops_assets import tracking_store
from mlops_assets.preload import preloading
from mlops_assets.tracking_store import (
    create_in_background,
    ensure_experiment,
    store_template,
    wait_for_store,
)


@pytest.fixture
def empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user with no cached empty store yet: the first store is made the slow way."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("MLOPS_CACHE_DIR", str(cache))
    return cache


def _held(lock: Path) -> bool:
    with lock.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def test_a_fresh_store_is_made_in_the_background_and_waited_for(
    tmp_path: Path, empty_cache: Path
) -> None:
    uri = f"sqlite:///{tmp_path / 'home' / 'mlflow.db'}"
    artifacts = tmp_path / "home" / "mlartifacts"
    process = create_in_background(uri, "background", str(artifacts))
    assert process is not None
    # The setup lock went to the child with its open file: held though this process let go.
    assert _held(tmp_path / "home" / "mlflow.db.setup.lock")
    # A client opening the store waits for the child to finish making it: the experiment,
    # the child's last step, is there.
    wait_for_store(uri)
    assert MlflowClient(tracking_uri=uri).get_experiment_by_name("background") is not None
    assert process.wait(timeout=60) == 0
    experiment_id = ensure_experiment(uri, "background", str(artifacts))
    experiment = MlflowClient(tracking_uri=uri).get_experiment(experiment_id)
    assert experiment.name == "background"
    assert experiment.artifact_location == artifacts.resolve().as_uri()
    # The store exists now: nothing more to start.
    assert create_in_background(uri, "background", str(artifacts)) is None
    # On its way, the child left the empty store in the user's cache for the next home.
    assert store_template().parent == empty_cache
    assert store_template().is_file()


def test_a_store_being_made_elsewhere_is_not_made_twice(tmp_path: Path, empty_cache: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    first = create_in_background(uri, "twice", None)
    assert first is not None
    # Its lock is held by the first child: a second start gives way instead of migrating too.
    assert _held(tmp_path / "mlflow.db.setup.lock")
    assert create_in_background(uri, "twice", None) is None
    assert first.wait(timeout=60) == 0
    assert MlflowClient(tracking_uri=uri).get_experiment_by_name("twice") is not None


def test_a_remote_store_is_left_to_its_server(tmp_path: Path) -> None:
    assert create_in_background("http://127.0.0.1:9/", "remote", None) is None


def _schema(database: Path) -> dict[str, list[str]]:
    """Each table's and index's definition, its lines sorted: MLflow writes a table's CHECK
    constraints in an order that varies from one process to the next (a set's)."""
    with sqlite3.connect(database) as connection:
        rows = connection.execute("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL")
        return {name: sorted(sql.splitlines()) for name, sql in rows}


def _revision(database: Path) -> list[tuple[str]]:
    with sqlite3.connect(database) as connection:
        return connection.execute("SELECT version_num FROM alembic_version").fetchall()


def test_a_new_home_gets_a_copy_of_the_cached_empty_store(
    tmp_path: Path, empty_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow's migrations run once per MLflow release and user; every later home copies what
    they left, and MLflow cannot tell the copy from a store it made itself."""
    first = tmp_path / "first" / "mlflow.db"
    ensure_experiment(f"sqlite:///{first}", "first", None)
    template = store_template()
    assert template.is_file()
    with sqlite3.connect(template) as connection:
        # Empty: MLflow adds its Default experiment to each copy as it opens it.
        assert connection.execute("SELECT COUNT(*) FROM experiments").fetchone() == (0,)

    builds: list[Path] = []
    monkeypatch.setattr(tracking_store, "_build_template", builds.append)
    second = tmp_path / "second" / "mlflow.db"
    artifacts = tmp_path / "second" / "mlartifacts"
    # Copied here and now: no process to start, and nothing left for one to do.
    assert create_in_background(f"sqlite:///{second}", "second", str(artifacts)) is None
    assert second.is_file()
    experiment_id = ensure_experiment(f"sqlite:///{second}", "second", str(artifacts))
    assert builds == []

    made_by_mlflow = tmp_path / "mlflow-itself" / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{made_by_mlflow}").search_experiments()
    assert _schema(second) == _schema(made_by_mlflow)
    assert _revision(second) == _revision(made_by_mlflow)
    client = MlflowClient(tracking_uri=f"sqlite:///{second}")
    assert [e.name for e in client.search_experiments(order_by=["name"])] == ["Default", "second"]
    # Its Default experiment is the one MLflow gives a store it made itself, from this process.
    assert (
        client.get_experiment("0").artifact_location
        == MlflowClient(tracking_uri=f"sqlite:///{made_by_mlflow}")
        .get_experiment("0")
        .artifact_location
    )
    assert client.get_experiment(experiment_id).artifact_location == artifacts.resolve().as_uri()
    run = client.create_run(experiment_id)
    client.log_metric(run.info.run_id, "f1_macro", 0.9)
    assert client.get_run(run.info.run_id).data.metrics == {"f1_macro": 0.9}


def test_a_cache_that_cannot_be_written_leaves_the_store_to_mlflow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder would be")
    monkeypatch.setenv("MLOPS_CACHE_DIR", str(blocked))
    database = tmp_path / "home" / "mlflow.db"
    experiment_id = ensure_experiment(f"sqlite:///{database}", "in-place", None)
    assert MlflowClient(tracking_uri=f"sqlite:///{database}").get_experiment(experiment_id)
    assert blocked.is_file() and not store_template().exists()
    assert "no copy of the cached empty MLflow store" in capsys.readouterr().err


def test_a_broken_cached_store_is_built_again(tmp_path: Path, empty_cache: Path) -> None:
    """A template cut short (a crash, a full disk) is never copied into a home."""
    template = store_template()
    template.parent.mkdir(parents=True)
    template.write_bytes(b"SQLite format 3\x00 and then nothing")
    database = tmp_path / "home" / "mlflow.db"
    # With no time to build it here, the run's start leaves the store to a process of its own.
    process = create_in_background(f"sqlite:///{database}", "rebuilt", None)
    assert process is not None and process.wait(timeout=60) == 0
    experiment_id = ensure_experiment(f"sqlite:///{database}", "rebuilt", None)
    assert MlflowClient(tracking_uri=f"sqlite:///{database}").get_experiment(experiment_id)
    assert _revision(template) == _revision(database)
    assert not list(empty_cache.glob("*.building"))


def test_preloading_imports_on_its_own_thread_and_waits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "preload_probe.py").write_text(
        "import threading\nIMPORTED_ON = threading.current_thread().name\n"
    )
    (tmp_path / "preload_broken.py").write_text("raise RuntimeError('broken on purpose')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "preload_probe", raising=False)
    with preloading(("preload_broken", "preload_probe")):
        pass
    # Waited for at the block's end; the broken module did not stop the next one, and is left
    # for the step that needs it to import and report.
    assert sys.modules["preload_probe"].IMPORTED_ON == "preload-imports"
    assert threading.current_thread().name != sys.modules["preload_probe"].IMPORTED_ON
    assert "preload_broken" not in sys.modules
    with pytest.raises(RuntimeError, match="broken on purpose"):
        __import__("preload_broken")
    sys.modules.pop("preload_probe", None)


def test_preloading_disabled_leaves_the_imports_to_their_steps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "preload_untouched.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with preloading(("preload_untouched",), enabled=False):
        pass
    assert "preload_untouched" not in sys.modules


_CYCLE_AT_EXIT = textwrap.dedent(
    """
    import gc, sys
    if sys.argv[1] == "platform":
        {imports}
    class Cycle:
        def __init__(self):
            self.me = self
        def __del__(self):
            print("finalized at exit", flush=True)
    Cycle()
    print("young threshold", gc.get_threshold()[0], flush=True)
    """
)


@pytest.mark.parametrize(
    "imports",
    [
        "import mlops_assets.collection",
        "import mlops_assets.cli",
        "import mlops_assets.definitions",
    ],
)
def test_a_platform_process_collects_less_often_and_not_at_exit(imports: str) -> None:
    """The CLI and the code location (code server, run workers) import the tuning: young
    collections every 10,000 allocations at least, and no final walk of the heap at exit; a
    plain process keeps CPython's defaults and its final collection."""
    script = _CYCLE_AT_EXIT.format(imports=imports)

    def run(kind: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", script, kind], capture_output=True, text=True, check=True
        )

    plain, platform = run("plain"), run("platform")
    default = int(plain.stdout.split("young threshold ")[1].split()[0])
    assert "finalized at exit" in plain.stdout
    assert f"young threshold {max(default, 10_000)}" in platform.stdout
    assert "finalized at exit" not in platform.stdout
    # Module teardown without the last collection reports nothing (no finalizer failing on
    # globals already cleared).
    assert "Exception ignored" not in platform.stderr


_RUN_COMMAND_IMPORTS = textwrap.dedent(
    """
    import os, sys, types
    runner = types.ModuleType("mlops_assets.runner")
    def run_pipeline(settings, log_level):
        import dagster  # what the real runner imports first
        at = {name: place for place, name in enumerate(sys.modules)}
        print("scipy.special at", at.get("scipy.special", -1), "dagster at", at["dagster"])
        sys.stdout.flush()
        os._exit(0)
    runner.run_pipeline = run_pipeline
    sys.modules["mlops_assets.runner"] = runner
    from mlops_assets.cli import main
    main(["run"])
    """
)


def test_the_run_command_imports_scipy_special_before_dagster(tmp_path: Path) -> None:
    """skops walks sys.modules in import order for each scipy.special ufunc when a model is
    saved: `mlops-assets run` puts scipy.special ahead of Dagster's thousand modules."""
    env = {
        **os.environ,
        "MLOPS_HOME": str(tmp_path / "home"),
        # A remote store: nothing is made in the background for this run that never runs.
        "MLFLOW_TRACKING_URI": "http://127.0.0.1:9/",
    }
    printed = subprocess.run(
        [sys.executable, "-c", _RUN_COMMAND_IMPORTS],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout
    order = re.search(r"scipy.special at (-?\d+) dagster at (\d+)", printed)
    assert order is not None, printed
    assert 0 <= int(order[1]) < int(order[2]), printed
