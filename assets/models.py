"""Where the training assets record their last successful run, which the evaluation assets
and the report read: `<models>/<name>/latest.json` holds its run directory and final
checkpoint, relative to the storage root."""

from assets.resources import LacyStorage
from pipelines.files import read_json

LATEST = "latest.json"


def latest_run(storage: LacyStorage, name: str) -> dict[str, str]:
    """{"run_dir", "checkpoint"} (absolute paths) of the last successful training of `name`.
    The file records them relative to the storage root (older files: absolute)."""
    path = storage.path("models", name, LATEST)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no trained {name} yet (materialize {name}_model first)")
    return {key: str(storage.resolve(ref)) for key, ref in read_json(path).items()}


def latest_checkpoint_of(storage: LacyStorage, name: str) -> str | None:
    """The final checkpoint of the last successful training of `name`, or None."""
    try:
        return latest_run(storage, name)["checkpoint"]
    except FileNotFoundError:
        return None
