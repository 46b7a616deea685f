"""The .pth line `make install` puts into the virtualenv: `dagster asset materialize` from the
repo root needs no -m, while `dagster dev` keeps reading pyproject.toml (its webserver child
refuses a module pointer next to the workspace it is given); every dagster command started in
the repo root uses the instance of its dagster.yaml (DAGSTER_HOME = the repo root), which
`dagster schedule list` and `dagster sensor list` require."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

PTH = Path(__file__).parents[2] / "assets" / "dagster_module.pth"


def env_after_startup(argv: list[str], cwd: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> str | None:
    monkeypatch.delenv("DAGSTER_MODULE_NAME", raising=False)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.chdir(cwd)
    exec(PTH.read_text(), {})  # what site.py does with a .pth line starting with "import"
    return os.environ.get(name)


def module_name_after_startup(argv: list[str], cwd: Path, monkeypatch: pytest.MonkeyPatch) -> str | None:
    return env_after_startup(argv, cwd, monkeypatch, "DAGSTER_MODULE_NAME")


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


@pytest.mark.parametrize("argv", [
    ["/repo/.venv/bin/dagster", "schedule", "list"],
    ["/repo/.venv/bin/dagster", "sensor", "list"],
    ["/repo/.venv/bin/dagster", "dev"],
    ["/repo/.venv/bin/dagster-daemon", "run"],
])
def test_dagster_home_is_the_repo_root(argv, monkeypatch):
    assert env_after_startup(argv, PTH.parents[1], monkeypatch, "DAGSTER_HOME") == str(PTH.parents[1])


def test_dagster_home_not_set_outside_the_repo_root_or_when_given(monkeypatch, tmp_path):
    argv = ["/repo/.venv/bin/dagster", "schedule", "list"]
    assert env_after_startup(argv, tmp_path, monkeypatch, "DAGSTER_HOME") is None
    assert env_after_startup(["-c"], PTH.parents[1], monkeypatch, "DAGSTER_HOME") is None
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setattr(sys, "argv", argv)
    exec(PTH.read_text(), {})
    assert os.environ["DAGSTER_HOME"] == str(tmp_path)  # an explicit instance wins


@pytest.mark.slow
def test_schedule_list_from_the_repo_root(tmp_path):
    """`dagster schedule list` in a copy of the repo root, through a venv-like startup that
    runs the .pth file (`python -c` with sys.argv[0] set the way the console script has it)."""
    root = PTH.parents[1]
    start = (f"import sys; sys.argv = ['{sys.prefix}/bin/dagster', 'schedule', 'list']; "
             f"exec(open({str(PTH)!r}).read()); from dagster._cli import main; main()")
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "DAGSTER_MODULE_NAME")}
    env |= {"DAGSTER_DISABLE_TELEMETRY": "1", "PYTHONPATH": str(root)}
    for name in ("dagster.yaml", "assets", "pyproject.toml"):
        (tmp_path / name).symlink_to(root / name)
    done = subprocess.run([sys.executable, "-c", start], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Schedule: reevaluate_stale_checkpoints" in done.stdout
    assert (tmp_path / ".dagster" / "storage").is_dir()  # the instance of dagster.yaml, not a temporary one
