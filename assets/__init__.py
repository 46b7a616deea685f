"""The Dagster layer: assets, checks, resources, partitions, sensors and schedules.
Thin: read config, call a library function, return metadata."""
