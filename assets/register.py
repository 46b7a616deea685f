"""Register every complete checkpoint under the models root as a partition of the
evaluation assets, in the repo's Dagster instance (what the `new_checkpoints` sensor does
under `dagster dev`), so that the CLI can evaluate it:

    python -m assets.register            # register; print every checkpoint's partition key
    python -m assets.register --latest   # ... print the key of each run's newest checkpoint
"""

import argparse

from dagster import DagsterInstance

from assets.instance import project_instance
from assets.partitions import checkpoint_keys, checkpoint_partitions, newest_per_run, unregistered
from assets.resources import LacyStorage


def register(instance: DagsterInstance, storage: LacyStorage) -> dict[str, str]:
    found = checkpoint_keys(storage)
    new = unregistered(found, instance)
    if new:
        instance.add_dynamic_partitions(checkpoint_partitions.name, sorted(new))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m assets.register", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latest", action="store_true", help="print only the newest checkpoint of each run")
    args = parser.parse_args()
    with project_instance() as instance:
        found = register(instance, LacyStorage())
    print("\n".join(newest_per_run(found) if args.latest else sorted(found)))


if __name__ == "__main__":
    main()
