"""One landing_sensor tick the way the daemon runs it: evaluated, then its partition requests
applied to the instance. Shared by test_automation.py and benchmarks/partitions.py."""

from typing import Any

import dagster as dg


def tick_landing_sensor(
    defs: dg.Definitions, instance: dg.DagsterInstance, cursor: str | None = None
) -> Any:
    context = dg.build_sensor_context(
        instance=instance, instance_ref=instance.get_ref(), cursor=cursor, definitions=defs
    )
    result = defs.get_sensor_def("landing_sensor").evaluate_tick(context)
    for request in result.dynamic_partitions_requests or []:
        if isinstance(request, dg.AddDynamicPartitionsRequest):
            instance.add_dynamic_partitions(request.partitions_def_name, request.partition_keys)
        else:
            for key in request.partition_keys:
                instance.delete_dynamic_partition(request.partitions_def_name, key)
    return result
