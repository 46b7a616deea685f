"""Partitions: corpus shards (static, from the data preset) and checkpoints (dynamic: one per
complete checkpoint under the models root, keyed by its path there)."""

from dagster import BackfillPolicy, DagsterInstance, DynamicPartitionsDefinition, StaticPartitionsDefinition

from assets.resources import LacyStorage
from pipelines.presets import data_preset
from trainer.checkpoint import list_checkpoints

NUM_SHARDS = data_preset().num_shards
shard_partitions = StaticPartitionsDefinition([f"{k:04d}" for k in range(NUM_SHARDS)])
# a backfill of the shard-partitioned stages runs as runs of at most k shards (a run launcher spreads them)
shard_backfill = BackfillPolicy.multi_run(max_partitions_per_run=data_preset().shards_per_run)

checkpoint_partitions = DynamicPartitionsDefinition(name="checkpoints")


def checkpoint_keys(storage: LacyStorage) -> dict[str, str]:
    """partition key (path under the models root) -> run directory, for every complete checkpoint."""
    root = storage.path("models")
    return {str(c.path.relative_to(root)): str(c.run_dir) for c in list_checkpoints(root)}


def unregistered(found: dict[str, str], instance: DagsterInstance) -> dict[str, str]:
    """The checkpoints of `found` that are not partitions of the evaluation assets yet."""
    known = set(instance.get_dynamic_partitions(checkpoint_partitions.name))
    return {k: run for k, run in found.items() if k not in known}


def newest_per_run(keys: dict[str, str]) -> list[str]:
    newest: dict[str, str] = {}
    for key, run in sorted(keys.items()):  # step-XXXXXXXX sorts by step
        newest[run] = key
    return sorted(newest.values())
