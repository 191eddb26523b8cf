"""What a model version needs to be reproduced, as flat string tags for the registry."""

import hashlib
import json
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

# MLflow keeps tag values up to 8,000 characters; beyond this the file list is summarised.
MAX_TAG_CHARS = 4000
PACKAGES = ("scikit-learn", "pandas", "numpy", "scipy", "skops", "mlflow", "dagster", "pandera")


def _git_commit(project_dir: Path) -> str:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=project_dir,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=project_dir,
        capture_output=True,
        text=True,
        timeout=5,
    ).stdout.strip()
    return result.stdout.strip() + ("-dirty" if dirty else "")


def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else ""


def _package_versions() -> str:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return json.dumps(found, sort_keys=True)


def reproducibility_manifest(
    project_dir: Path,
    *,
    dataset_fingerprint: str,
    rows: int,
    schema_hash: str,
    seed: int,
    dagster_run_id: str,
    data_versions: dict[str, str | None],
    code_versions: dict[str, str | None],
    files: dict[str, str] | None = None,
) -> dict[str, str]:
    """`files` are the landed files (partitions) trained on with their content hashes; a long
    list is summarised, the whole of it is the training run's data/files.json."""
    listed = json.dumps({name: sha[:16] for name, sha in (files or {}).items()}, sort_keys=True)
    if len(listed) > MAX_TAG_CHARS:
        listed = f"{len(files or {})} files: see the training run's data/files.json"
    return {
        "manifest.files": listed,
        "manifest.dataset_fingerprint": dataset_fingerprint,
        "manifest.rows": str(rows),
        "manifest.schema_hash": schema_hash,
        "manifest.seed": str(seed),
        "manifest.dagster_run_id": dagster_run_id,
        "manifest.data_versions": json.dumps(data_versions, sort_keys=True),
        "manifest.code_versions": json.dumps(code_versions, sort_keys=True),
        "manifest.git_commit": _git_commit(project_dir),
        "manifest.lock_hash": _file_hash(project_dir / "uv.lock"),
        "manifest.python": platform.python_version(),
        "manifest.packages": _package_versions(),
    }
