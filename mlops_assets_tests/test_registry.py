"""The registry side: rollback and promote round trips, concurrent registrations."""

import gc
import json
import threading
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer

from mlops_assets.cli import main
from mlops_assets.gate import GateRules
from mlops_assets.promotion import gate_and_register
from mlops_assets.resources.mlflow import CHAMPION, ModelRegistry, RegistryError
from mlops_assets.tracking_store import ensure_experiment
from mlops_assets.training.evaluate import baseline_score
from mlops_assets.training.pipeline import SKOPS_TRUSTED_TYPES, build_pipeline
from mlops_assets.training.sweep import Split, split_holdout

from .conftest import Project


def _registry(project: Project) -> ModelRegistry:
    return project.registry()


def test_rollback_and_promote_round_trip(
    project: Project,
    demo_frame: pd.DataFrame,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert project.materialize().success  # v1, champion
    noisy = demo_frame.copy()
    noisy.loc[::10, "target"] = 1 - noisy.loc[::10, "target"]
    project.land("noisy.csv", noisy)
    assert project.materialize().success  # v2, rejected
    registry = _registry(project)
    assert project.champion_version() == 1

    registry.force_promote(2, "shadow test of the noisy model", "alice")
    assert project.champion_version() == 2
    tags = registry.client().get_model_version(registry.model_name, "2").tags
    assert tags["promoted.forced"] == "true" and tags["promoted.by"] == "alice"
    assert tags["promotion.replaces"] == "1"

    assert registry.rollback(None, "noisy model underperforms", "bob") == (2, 1)
    assert project.champion_version() == 1
    tags = registry.client().get_model_version(registry.model_name, "1").tags
    assert tags["rollback.from"] == "2" and tags["rollback.by"] == "bob"
    assert tags["rollback.reason"] == "noisy model underperforms"
    old = registry.client().get_model_version(registry.model_name, "2").tags
    assert old["rollback.replaced_by"] == "1"

    with pytest.raises(RegistryError, match="has no version 9"):
        registry.rollback(9, "typo", "bob")
    assert project.champion_version() == 1

    # The same through the CLI, against the same store.
    monkeypatch.setenv("MLOPS_PROJECT_DIR", str(project.settings.project_dir))
    monkeypatch.setenv("MLOPS_HOME", str(project.settings.home))
    monkeypatch.setenv("DAGSTER_HOME", str(project.settings.home / "cli-dagster"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert main(["promote", "2", "--reason", "try"]) == 2
    assert "pass --force" in capsys.readouterr().err
    assert main(["promote", "2", "--force", "--reason", "try"]) == 0
    assert main(["rollback"]) == 0
    assert "v2 -> v1" in capsys.readouterr().out
    assert main(["status", "--json"]) == 0
    champion = json.loads(capsys.readouterr().out)["champion"]
    assert champion["version"] == 1
    assert champion["lineage"]["previous_champion"] == "2"
    assert champion["lineage"]["dagster_run_id"]


def _demo_split() -> tuple[Split, dict[str, float]]:
    frame = load_breast_cancer(as_frame=True).frame
    features = [c for c in frame.columns if c != "target"]
    split = split_holdout(frame, features, "target", 0.25, 42)
    return split, baseline_score(split.train_x, split.train_y, split.test_x, split.test_y)


def _logged_models(tracking_uri: str, artifacts: Path, count: int) -> list[tuple[str, str, str]]:
    split, _ = _demo_split()
    ensure_experiment(tracking_uri, "concurrency", str(artifacts))
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment("concurrency")
    logged = []
    for seed in range(count):
        model = build_pipeline(split.train_x, n_estimators=5 + 5 * seed, seed=seed)
        model.fit(split.train_x, split.train_y)
        with mlflow.start_run() as run:
            info = mlflow.sklearn.log_model(
                model,
                name="model",
                serialization_format="skops",
                skops_trusted_types=SKOPS_TRUSTED_TYPES,
                pip_requirements=["scikit-learn"],
            )
        logged.append((info.model_uri, run.info.run_id, info.model_id))
    return logged


def test_concurrent_registrations_are_unique_and_champion_always_passed(
    project: Project,
) -> None:
    split, baseline = _demo_split()
    registry = _registry(project)
    models = _logged_models(project.settings.tracking_uri, project.settings.artifacts_dir, 6)
    # Without the noise rule several of these promote, which is what makes the race real.
    rules = GateRules(metric="f1_macro", floors={"f1_macro": 0.7}, require_significant=False)
    results, errors = [], []

    def register(uri: str, run_id: str, model_id: str) -> None:
        try:
            results.append(
                gate_and_register(registry, rules, split, uri, run_id, model_id, baseline, {})
            )
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=register, args=m) for m in models]
    # CPython 3.11 before 3.11.8 can raise "AST constructor recursion depth mismatch" when a
    # garbage collection releases the GIL while another thread builds an AST (python/cpython
    # #106905); the run workers this race stands for are processes, so the collector waits.
    gc.disable()
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        gc.enable()
    assert not errors, errors
    versions = sorted(r.version for r in results)
    assert versions == [1, 2, 3, 4, 5, 6]
    champion = registry.version_for_alias(CHAMPION)
    assert champion is not None and champion.tags["gate.decision"] == "promoted"
    # Every champion in the chain passed the gate against the champion it replaced.
    chain, current = [], champion
    while current is not None:
        chain.append(int(current.version))
        assert current.tags["gate.decision"] == "promoted" or "promoted.forced" in current.tags
        previous = current.tags.get("promotion.replaces")
        current = (
            registry.client().get_model_version(registry.model_name, previous) if previous else None
        )
    promoted = {r.version for r in results if r.decision.promote}
    assert set(chain) == promoted


def test_a_crash_before_the_alias_moves_leaves_the_champion_alone(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    split, baseline = _demo_split()
    registry = _registry(project)
    rules = GateRules(metric="f1_macro", floors={"f1_macro": 0.7}, require_significant=False)
    (first, run_one, id_one), (second, run_two, id_two) = _logged_models(
        project.settings.tracking_uri, project.settings.artifacts_dir, 2
    )
    assert gate_and_register(
        registry, rules, split, first, run_one, id_one, baseline, {}
    ).decision.promote

    def crash(self: ModelRegistry, alias: str, version: int) -> None:
        raise RuntimeError("killed between register and alias")

    monkeypatch.setattr(ModelRegistry, "set_alias", crash)
    with pytest.raises(RuntimeError, match="killed"):
        gate_and_register(registry, rules, split, second, run_two, id_two, baseline, {})
    # The version exists with its decision; the champion is still the one that passed.
    champion = registry.version_for_alias(CHAMPION)
    assert champion is not None and int(champion.version) == 1
    assert [int(v.version) for v in registry.versions()] == [1, 2]
    monkeypatch.undo()
    # Re-running after the crash is safe: a new version, and the alias moves only on a pass.
    again = gate_and_register(registry, rules, split, second, run_two, id_two, baseline, {})
    assert again.version == 3
    champion = registry.version_for_alias(CHAMPION)
    assert champion is not None
    assert int(champion.version) == (3 if again.decision.promote else 1)


def test_a_version_loads_from_its_own_registry_whatever_the_process_default(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ModelRegistry names its registry when it downloads a models:/ URI: MLflow otherwise
    resolves it against the process's default registry (./mlflow.db where the caller stands)."""
    import mlflow.tracking._model_registry.utils as registry_utils
    import mlflow.tracking._tracking_service.utils as tracking_utils

    assert project.materialize().success
    logged = json.loads(project.stored("trained_model").read_text())["model_uri"]
    elsewhere = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    monkeypatch.setattr(registry_utils, "_registry_uri", elsewhere)
    monkeypatch.setattr(tracking_utils, "_tracking_uri", elsewhere)
    monkeypatch.chdir(tmp_path)
    registry = project.registry()
    # A registered version (models:/<name>/<version>) and a logged model (models:/<model id>).
    assert list(registry.load_model(1).classes_) == [0, 1]
    assert list(registry.load_model_uri(logged).classes_) == [0, 1]
