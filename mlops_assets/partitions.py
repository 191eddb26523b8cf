"""One landed file, one partition: which partitions exist, and what a folder scan asks of them.

The partition key is the file's name in the landing folder; the bundled demo data is the one
partition `sklearn:load_breast_cancer` while the folder holds no file. Plain functions: the
landing sensor and `mlops-assets run` apply the same plan.
"""

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import dagster as dg

from mlops_assets.sources import DEMO_SOURCE

LANDED_FILES = "landed_files"
landed_files = dg.DynamicPartitionsDefinition(name=LANDED_FILES)

# Partition keys added or deleted per storage call. Dagster's SQLite storage binds one
# variable per key (dagster-io/dagster #16260); 500 stays under the oldest SQLite limit (999).
CHUNK = 500

# The assets kept per landed file; the rest of the graph is built from all of them.
PARTITIONED_ASSETS = ("raw_dataset", "validated_dataset", "quarantined_rows", "drift_report")


@dataclass
class PartitionPlan:
    """What a scan of the landing folder asks of the partitions."""

    add: list[str] = field(default_factory=list)
    retire: list[str] = field(default_factory=list)
    # New files and files whose bytes changed: their partition is (re-)materialized.
    refresh: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.add or self.retire or self.refresh)


def desired_partitions(names: Sequence[str]) -> list[str]:
    return sorted(names) if names else [DEMO_SOURCE]


def plan_partitions(
    scanned: dict[str, tuple[int, int, str]],
    previous: dict[str, tuple[int, int, str]] | None,
    existing: Sequence[str],
) -> PartitionPlan:
    """`scanned` and `previous` map file names to (size, mtime_ns, sha256): this scan and the
    one before (None when there was none, e.g. a new sensor cursor: then every file is read
    again, and run keys keep runs already launched from launching twice)."""
    plan = membership(list(scanned), existing)
    have = set(existing)
    before = previous or {}
    refresh = [
        name
        for name, entry in sorted(scanned.items())
        if name not in have or previous is None or name not in before or before[name][2] != entry[2]
    ]
    plan.refresh = refresh
    return plan


def membership(names: Sequence[str], existing: Sequence[str]) -> PartitionPlan:
    """The partitions to add and retire so that there is one per landed file (or the demo's)."""
    desired = desired_partitions(names)
    have, wanted = set(existing), set(desired)
    return PartitionPlan(
        add=[key for key in desired if key not in have],
        retire=sorted(key for key in have if key not in wanted),
    )


def chunks(keys: Sequence[str], size: int = CHUNK) -> Iterator[list[str]]:
    for start in range(0, len(keys), size):
        yield list(keys[start : start + size])


def apply_plan(instance: dg.DagsterInstance, plan: PartitionPlan) -> None:
    """Adds and retires partitions on the instance directly (what `mlops-assets run` does; the
    sensor returns the same as requests instead)."""
    for part in chunks(plan.add):
        instance.add_dynamic_partitions(LANDED_FILES, part)
    for key in plan.retire:
        instance.delete_dynamic_partition(LANDED_FILES, key)


def partition_requests(plan: PartitionPlan) -> list[object]:
    requests: list[object] = [landed_files.build_add_request(part) for part in chunks(plan.add)]
    requests += [landed_files.build_delete_request(part) for part in chunks(plan.retire)]
    return requests
