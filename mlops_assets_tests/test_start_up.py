"""Work moved off a run's path: a fresh MLflow store made by a process of its own, the
imports that follow training done on a thread while it fits, and the garbage collector tuned
for a platform process."""

import fcntl
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from mlops_assets.preload import preloading
from mlops_assets.tracking_store import create_in_background, ensure_experiment, wait_for_store


def _held(lock: Path) -> bool:
    with lock.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def test_a_fresh_store_is_made_in_the_background_and_waited_for(tmp_path: Path) -> None:
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


def test_a_store_being_made_elsewhere_is_not_made_twice(tmp_path: Path) -> None:
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
