"""Resources shared by the assets."""

from __future__ import annotations

from pathlib import Path

from dagster import ConfigurableResource

from pipelines.files import portable_path, resolve_path


class LacyStorage(ConfigurableResource):
    """Where artifacts live: one folder per asset under `root` (relative to the repo root)."""

    root: str = "artifacts"

    def path(self, *parts: str) -> Path:
        return Path(self.root).resolve().joinpath(*parts)

    def ref(self, path: str | Path) -> str:
        """How pointer files under the root record `path`: relative to the root when under it."""
        return portable_path(path, self.path())

    def resolve(self, ref: str) -> Path:
        """The path a pointer file's `ref` names (relative to the root, or an older absolute one)."""
        return resolve_path(ref, self.path())
