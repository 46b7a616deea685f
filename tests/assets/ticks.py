"""The sensor and the schedule evaluated as the daemon evaluates them (`evaluate_tick`: the
resources come from the context, not as arguments)."""

from dagster import DagsterInstance, build_schedule_context, build_sensor_context
from dagster._core.definitions.schedule_definition import ScheduleExecutionData
from dagster._core.definitions.sensor_definition import SensorExecutionData

from assets.definitions import defs
from assets.partitions import checkpoint_partitions


def sensor_tick(instance: DagsterInstance, resources: dict, definitions=defs) -> SensorExecutionData:
    """One tick of `new_checkpoints`; the partitions it asks for are added to `instance`, as
    the daemon adds them."""
    # the instance's ref: the daemon's context has one, and resolves the requests' partitions through it
    with build_sensor_context(instance_ref=instance.get_ref(), resources=resources, definitions=definitions) as context:
        data = definitions.resolve_sensor_def("new_checkpoints").evaluate_tick(context)
    for request in data.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(checkpoint_partitions.name, list(request.partition_keys))
    return data


def schedule_tick(instance: DagsterInstance, resources: dict, definitions=defs) -> ScheduleExecutionData:
    """One tick of `reevaluate_stale_checkpoints`."""
    # as a context manager: the context enters the instance, and an unclosed one leaves Dagster's
    # process-wide state storage pointing at this test's temporary instance after it is gone
    with build_schedule_context(instance=instance, resources=resources, repository_def=definitions.get_repository_def()) as context:
        return definitions.resolve_schedule_def("reevaluate_stale_checkpoints").evaluate_tick(context)
