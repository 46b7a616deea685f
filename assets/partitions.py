"""Partitions: corpus shards (static, from the data preset)."""

from dagster import StaticPartitionsDefinition

from pipelines.presets import data_preset

NUM_SHARDS = data_preset().num_shards
shard_partitions = StaticPartitionsDefinition([f"{k:04d}" for k in range(NUM_SHARDS)])
