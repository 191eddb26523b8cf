"""`mlops-assets dev`: the Dagster UI and daemon, and beside them an MLflow server on the local
store.

Runs then talk to MLflow over HTTP instead of opening the SQLite store themselves, which costs
each run process 3-4 s (SQLAlchemy, migration checks) on the path from a landed file to a new
champion; and the MLflow links in the Dagster UI work. Without a local SQLite store (an explicit
MLFLOW_TRACKING_URI) or when the port is taken, it runs Dagster alone."""

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from mlops_assets.settings import Settings


def _executable(name: str) -> str:
    return shutil.which(name) or str(Path(sys.executable).with_name(name))


def _healthy(url: str) -> bool:
    try:
        urllib.request.urlopen(f"{url}/health", timeout=2).close()
        return True
    except OSError:
        return False


def start_mlflow_server(
    settings: Settings, host: str, port: int, timeout: float = 90.0
) -> tuple[subprocess.Popen[bytes], str] | None:
    url = f"http://{host}:{port}"
    if _healthy(url):
        print(f"mlops-assets: port {port} already serves something; MLflow stays local", flush=True)
        return None
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    server = subprocess.Popen(
        [
            _executable("mlflow"),
            "server",
            "--backend-store-uri",
            settings.tracking_uri,
            # Artifacts stay files under MLOPS_HOME that runs write directly.
            "--default-artifact-root",
            settings.artifacts_dir.resolve().as_uri(),
            "--no-serve-artifacts",
            "--host",
            host,
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        env=env,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            break
        if _healthy(url):
            return server, url
        time.sleep(0.5)
    server.terminate()
    print("mlops-assets: the MLflow server did not start; MLflow stays local", flush=True)
    return None


def run_dev(settings: Settings, host: str, port: int, mlflow_port: int | None) -> int:
    from mlops_assets.home import prepare_home
    from mlops_assets.tracking_store import ensure_experiment

    prepare_home(settings)
    env = dict(os.environ)
    # Links from MLflow back to Dagster (run and asset URLs) point at this webserver, unless the
    # user names a public address.
    env.setdefault("MLOPS_DAGSTER_UI_URL", f"http://{host}:{port}")
    # `dagster dev` runs in DAGSTER_HOME: started in the project folder it warns that the
    # project's dagster.yaml "will not be used", though prepare_home copied it there. Relative
    # MLOPS_* paths still resolve against the project.
    env["MLOPS_PROJECT_DIR"] = str(settings.project_dir)
    children: list[subprocess.Popen[bytes]] = []
    if mlflow_port and settings.tracking_uri.startswith("sqlite:"):
        # The experiment is created on the store first, so its artifacts live under MLOPS_HOME.
        ensure_experiment(
            settings.tracking_uri, settings.experiment_name, str(settings.artifacts_dir)
        )
        started = start_mlflow_server(settings, host, mlflow_port)
        if started is not None:
            server, url = started
            children.append(server)
            env["MLFLOW_TRACKING_URI"] = url
            env["MLOPS_MLFLOW_UI_URL"] = url
            print(f"mlops-assets: MLflow UI on {url}", flush=True)
    workspace = settings.project_dir / "workspace.yaml"
    command = [_executable("dagster"), "dev", "--host", host, "--port", str(port)]
    if workspace.is_file():
        command += ["--workspace", str(workspace)]
    else:
        command += ["--module-name", "mlops_assets.definitions"]
    print(f"mlops-assets: Dagster UI on http://{host}:{port} (Ctrl-C stops)", flush=True)
    # Started from a script or with `&`, SIGINT arrives ignored, and `dagster dev` maps SIGTERM
    # to its SIGINT handling: it would never stop. Give the children a working SIGINT, and their
    # own process group so whatever outlives a graceful stop can be ended as a whole.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    dagster = subprocess.Popen(command, env=env, cwd=settings.dagster_home, start_new_session=True)
    children.append(dagster)

    def stop(signum: int, frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGINT if child is dagster else signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    try:
        code = dagster.wait()
    except KeyboardInterrupt:
        stop(signal.SIGINT, None)
        code = 130
    for child in children:
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
    # The webserver, daemon and code server are dagster dev's children: none may keep the port.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(dagster.pid, signal.SIGKILL)
    return code
