"""A landed file's class mix against the champion's training data (or the other files): a stuck
labelling job is refused with the file, column and rule; a person accepts a batch that is right,
and the acceptance is recorded on validated_dataset and honoured."""

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from mlops_assets.assets.data import ACCEPTED_LABEL_MIX
from mlops_assets.cli import main
from mlops_assets.quality.label_mix import (
    LabelMixPolicy,
    acceptance_key,
    class_counts,
    class_counts_by_file,
    label_shift,
    label_shifts,
)

from .conftest import QUICK_TRAINING, Project, failure_messages

POLICY = LabelMixPolicy()


def _counts(**classes: int) -> pd.Series:
    return pd.Series(classes, dtype="int64").sort_index()


def test_a_stuck_batch_is_a_shift_with_its_shares_and_p_value() -> None:
    shift = label_shift("stuck.csv", _counts(a=300), _counts(a=630, b=370), "ref", POLICY)
    assert shift is not None
    assert shift.shares == {"a": 1.0, "b": 0.0}
    assert shift.shift == pytest.approx(0.37)
    assert shift.p_value < 1e-20
    assert "accept-labels stuck.csv" in shift.message()


def test_the_same_mix_drawn_again_is_not_a_shift() -> None:
    for seed in range(20):
        labels = pd.Series(np.random.default_rng(seed).choice(["a", "b"], 400, p=[0.63, 0.37]))
        assert (
            label_shift("f.csv", class_counts(labels), _counts(a=630, b=370), "r", POLICY) is None
        )


def test_a_large_file_needs_a_material_shift_not_only_significance() -> None:
    # 5 points on a million rows is far beyond chance, but not a stuck labeller.
    drifted = _counts(a=680_000, b=320_000)
    assert label_shift("big.csv", drifted, _counts(a=630, b=370) * 1000, "r", POLICY) is None
    strict = LabelMixPolicy(min_shift=0.01)
    assert label_shift("big.csv", drifted, _counts(a=630, b=370) * 1000, "r", strict) is not None


def test_too_few_rows_are_not_judged() -> None:
    assert label_shift("tiny.csv", _counts(a=20), _counts(a=630, b=370), "r", POLICY) is None


def test_without_a_reference_each_file_is_compared_with_the_others() -> None:
    per_file = {
        "one.csv": _counts(a=300, b=200),
        "two.csv": _counts(a=290, b=210),
        "stuck.csv": _counts(b=300),
    }
    shifts = label_shifts(per_file, {}, None, "", POLICY)
    assert [s.file for s in shifts] == ["stuck.csv"]
    assert shifts[0].reference == "the other landed files"
    # Two files that disagree: nothing says which one is right.
    two = {"one.csv": _counts(a=300, b=200), "stuck.csv": _counts(b=300)}
    assert label_shifts(two, {}, None, "", POLICY) == []


def test_an_acceptance_names_the_file_and_its_bytes() -> None:
    per_file = {"stuck.csv": _counts(b=300)}
    reference = _counts(a=630, b=370)
    accepted = LabelMixPolicy(accepted=frozenset({acceptance_key("stuck.csv", "abc")}))
    assert label_shifts(per_file, {"stuck.csv": "abc"}, reference, "r", accepted) == []
    # Other bytes under the same name are judged again.
    assert len(label_shifts(per_file, {"stuck.csv": "def"}, reference, "r", accepted)) == 1


def test_counts_by_file_match_counting_each_file_alone() -> None:
    frame = pd.DataFrame({"_source_file": ["x", "x", "y", "y", "y"], "target": [1, 0, 1, 1, 1]})
    counts = class_counts_by_file(frame, "_source_file", "target")
    assert counts["x"].to_dict() == {"0": 1, "1": 1}
    assert counts["y"].to_dict() == {"1": 3}


def _stuck_batch(demo_frame: pd.DataFrame) -> pd.DataFrame:
    """New rows (not duplicates of the demo's), every label the same."""
    batch = demo_frame.sample(300, random_state=1).copy()
    features = [c for c in batch.columns if c != "target"]
    noise = np.random.default_rng(0).normal(0, 0.01, size=batch[features].shape)
    batch[features] = batch[features] * (1 + noise)
    batch["target"] = 1
    return batch


def test_a_stuck_batch_is_refused_until_accepted(
    project: Project, demo_frame: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.land("batch1.csv", demo_frame)
    first = project.materialize(QUICK_TRAINING)
    assert first.success, failure_messages(first)
    assert project.champion_version() == 1
    validated_before = project.snapshot("validated_dataset")

    project.land("stuck.csv", _stuck_batch(demo_frame))
    refused = project.materialize(QUICK_TRAINING)
    # Only the stuck file's partition fails; the model is trained on the others.
    assert refused.success, failure_messages(refused)
    assert not refused.files["stuck.csv"].success
    message = failure_messages(refused.files["stuck.csv"])
    assert "stuck.csv: column 'target': label_mix:" in message
    assert "champion v1's training sample" in message
    # Nothing lost: the last good data and the champion stay.
    after = project.snapshot("validated_dataset")
    assert {name: after[name] for name in validated_before} == validated_before
    assert "stuck.csv.parquet" not in after
    assert project.champion_version() == 1

    # The CLI records the acceptance as an observation on validated_dataset.
    monkeypatch.setenv("MLOPS_PROJECT_DIR", str(project.settings.project_dir))
    monkeypatch.setenv("MLOPS_HOME", str(project.settings.home))
    monkeypatch.setenv("MLOPS_LANDING_DIR", str(project.landing))
    # Set through monkeypatch so the value `prepare_home` exports is undone after the test.
    monkeypatch.setenv("DAGSTER_HOME", str(project.settings.dagster_home))
    monkeypatch.setattr(
        "dagster.DagsterInstance.get", staticmethod(lambda: _unclosed(project.instance))
    )
    assert main(["accept-labels", "stuck.csv", "--reason", "a recall batch"]) == 0
    [record] = project.instance.fetch_observations(
        dg.AssetKey("validated_dataset"), limit=10
    ).records
    assert record.asset_observation.partition == "stuck.csv"  # type: ignore[union-attr]
    metadata = record.asset_observation.metadata  # type: ignore[union-attr]
    assert metadata["reason"].value == "a recall batch"
    assert str(metadata[ACCEPTED_LABEL_MIX].value).startswith("stuck.csv@")

    accepted = project.materialize(QUICK_TRAINING)
    validation = [
        e for e in accepted.all_events if e.step_key == "validation" and e.is_step_failure
    ]
    assert not validation, failure_messages(accepted)
    assert "stuck.csv" in project.load("validated_dataset")["_source_file"].astype(str).unique()


class _unclosed:
    """The test's instance, usable in a `with` without being closed by it."""

    def __init__(self, instance: object) -> None:
        self.instance = instance

    def __enter__(self) -> object:
        return self.instance

    def __exit__(self, *exc: object) -> None:
        return None
