"""The .pth line `make install` puts into the virtualenv: `dagster asset materialize` from the
repo root needs no -m, while `dagster dev` keeps reading pyproject.toml (its webserver child
refuses a module pointer next to the workspace it is given)."""

import os
import sys
from pathlib import Path

import pytest

PTH = Path(__file__).parents[2] / "assets" / "dagster_module.pth"


def module_name_after_startup(
    argv: list[str], cwd: Path, monkeypatch: pytest.MonkeyPatch
) -> str | None:
    monkeypatch.delenv("DAGSTER_MODULE_NAME", raising=False)
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.chdir(cwd)
    exec(PTH.read_text())  # what site.py does with a .pth line starting with "import"
    return os.environ.get("DAGSTER_MODULE_NAME")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["/repo/.venv/bin/dagster", "asset", "materialize", "--select", "raw_corpus"], "assets.definitions"),
        (["/repo/.venv/bin/dagster", "dev"], None),
        (["/usr/lib/python3.11/site-packages/dagster_webserver/__main__.py"], None),
        (["-c"], None),
    ],
)
def test_module_name_set_only_for_dagster_cli_commands(argv, expected, monkeypatch):
    assert module_name_after_startup(argv, PTH.parents[1], monkeypatch) == expected


def test_module_name_not_set_outside_the_repo_root(monkeypatch, tmp_path):
    argv = ["/repo/.venv/bin/dagster", "asset", "materialize"]
    assert module_name_after_startup(argv, tmp_path, monkeypatch) is None
