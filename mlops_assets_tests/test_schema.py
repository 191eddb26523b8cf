"""Schemas: the demo's built-in one, and inferred YAML for a user's data."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops_assets.quality.schema import demo_schema, infer_schema, load_schema


def test_demo_schema_covers_the_demo_columns() -> None:
    schema = demo_schema()
    assert schema.target == "target"
    assert len(schema.features) == 30
    assert all(
        "finite" in [c.name for c in schema.schema.columns[f].checks] for f in schema.features
    )
    assert demo_schema().fingerprint == schema.fingerprint


def test_inferred_schema_round_trips_through_yaml(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "city": ["Oslo", "Lima", "Oslo", None],
            "rooms": [1, 2, 3, 4],
            "price": [100.0, 250.0, np.nan, 400.0],
            "kind": ["flat", "house", "flat", "house"],
        }
    )
    inferred = infer_schema(frame, "kind", "homes")
    path = tmp_path / "homes.yaml"
    path.write_text(inferred.to_yaml())
    loaded = load_schema(path)
    assert loaded.target == "kind" and loaded.name == "homes"
    columns = loaded.schema.columns
    assert columns["city"].nullable and not columns["rooms"].nullable
    assert columns["price"].nullable
    checks = {name: [c.name for c in col.checks] for name, col in columns.items()}
    assert "isin" in checks["city"] and "isin" in checks["kind"]
    assert "in_range" in checks["price"] and "finite" in checks["price"]
    # Ranges get a margin, and a quantity never seen negative stays non-negative.
    price_range = next(c for c in columns["price"].checks if c.name == "in_range")
    assert price_range.statistics["min_value"] == 70.0
    assert price_range.statistics["max_value"] == 430.0
    # An integer column gets whole bounds, rounded outwards (0.7 and 4.3 here).
    rooms_range = next(c for c in columns["rooms"].checks if c.name == "in_range")
    assert (rooms_range.statistics["min_value"], rooms_range.statistics["max_value"]) == (0, 5)


def test_inferred_bounds_read_as_a_person_would_write_them() -> None:
    frame = pd.DataFrame({"x": [7.9266, 8.0012, 12.1189], "y": ["a", "b", "a"]})
    [check] = [c for c in infer_schema(frame, "y", "s").schema.columns["x"].checks]
    low, high = check.statistics["min_value"], check.statistics["max_value"]
    # 10% of the range outside the data, then three significant digits away from it.
    assert (low, high) == (7.5, 12.6)
    assert low <= 7.9266 - 0.419 and high >= 12.1189 + 0.419


def test_load_schema_needs_a_target(tmp_path: Path) -> None:
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"]})
    path = tmp_path / "s.yaml"
    path.write_text(str(infer_schema(frame, "b", "s").schema.to_yaml()))  # no metadata
    with pytest.raises(ValueError, match="no target column"):
        load_schema(path)
    assert load_schema(path, target="b").target == "b"
    with pytest.raises(ValueError, match="'nope' is not among"):
        load_schema(path, target="nope")
    with pytest.raises(FileNotFoundError, match="MLOPS_SCHEMA"):
        load_schema(tmp_path / "missing.yaml")
