"""Resources shared by the assets."""

from __future__ import annotations

from pathlib import Path

from dagster import ConfigurableResource


class LacyStorage(ConfigurableResource):
    """Where artifacts live: one folder per asset under `root` (relative to the repo root)."""

    root: str = "artifacts"

    def path(self, *parts: str) -> Path:
        return Path(self.root).resolve().joinpath(*parts)
