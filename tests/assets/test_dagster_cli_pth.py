"""The .pth line `make install` puts into the virtualenv: `dagster asset materialize` (and the
other `dagster asset` commands) in the repo root need no -m. This Dagster's asset commands read
only -m / DAGSTER_MODULE_NAME, not pyproject's [tool.dagster] (which `dagster dev` and the
other workspace commands read, and which the line leaves to them)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
PTH = ROOT / "assets" / "dagster_cli.pth"


def module_name_after_startup(argv: list[str], cwd: Path, monkeypatch: pytest.MonkeyPatch) -> str | None:
    monkeypatch.delenv("DAGSTER_MODULE_NAME", raising=False)
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.chdir(cwd)
    exec(PTH.read_text(), {})  # what site.py does with a .pth line starting with "import"
    return os.environ.get("DAGSTER_MODULE_NAME")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["/repo/.venv/bin/dagster", "asset", "materialize", "--select", "lacy_model"], "assets.definitions"),
        (["/repo/.venv/bin/dagster", "asset", "list"], "assets.definitions"),
        (["/repo/.venv/bin/dagster", "dev"], None),
        (["/repo/.venv/bin/dagster", "job", "execute", "-m", "assets.definitions", "-j", "corpus_job"], None),
        (["/usr/lib/python3.11/site-packages/dagster_webserver/__main__.py"], None),
        (["-c"], None),
    ],
)
def test_module_name_set_only_for_dagster_asset_commands(argv, expected, monkeypatch):
    assert module_name_after_startup(argv, ROOT, monkeypatch) == expected


def test_module_name_not_set_outside_the_repo_root(monkeypatch, tmp_path):
    assert module_name_after_startup(["/repo/.venv/bin/dagster", "asset", "materialize"], tmp_path, monkeypatch) is None


def test_asset_list_from_the_repo_root_with_no_flags():
    """`dagster asset list` through a startup that runs the .pth line (sys.argv[0] set the way
    the console script has it); without the line the same command fails."""
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_MODULE_NAME"} | {"DAGSTER_DISABLE_TELEMETRY": "1"}
    for pth, ok in (("", False), (f"exec(open({str(PTH)!r}).read()); ", True)):
        start = (f"import sys; sys.argv = ['{sys.prefix}/bin/dagster', 'asset', 'list', '--select', 'lacy_model']; "
                 f"{pth}from dagster._cli import main; main()")
        done = subprocess.run([sys.executable, "-c", start], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert (done.returncode == 0) is ok, done.stderr[-2000:]
        assert ("lacy_model" in done.stdout.split()) is ok
