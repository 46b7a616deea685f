"""Pointer files record paths relative to the storage root and resolve them on read."""

from pathlib import Path

from pipelines.files import portable_path, resolve_path


def test_a_path_under_the_root_is_recorded_relative_and_resolves_under_a_moved_root(tmp_path):
    root = tmp_path / "artifacts"
    ref = portable_path(root / "models" / "lacy" / "run-1" / "step-00000002", root)
    assert ref == "models/lacy/run-1/step-00000002"
    assert resolve_path(ref, tmp_path / "mounted") == (tmp_path / "mounted" / "models/lacy/run-1/step-00000002").resolve()


def test_a_path_outside_the_root_or_without_a_root_stays_absolute(tmp_path):
    root = tmp_path / "artifacts"
    outside = tmp_path / "elsewhere" / "knowledge.db"
    assert portable_path(outside, root) == str(outside.resolve())
    assert portable_path(root / "token_shards", None) == str((root / "token_shards").resolve())
    assert portable_path(tmp_path / "artifacts-old" / "x", root) == str((tmp_path / "artifacts-old" / "x").resolve())  # a prefix is not a parent


def test_an_old_absolute_ref_is_read_as_written(tmp_path):
    assert resolve_path("/old/mount/models/lacy/run-1", tmp_path) == Path("/old/mount/models/lacy/run-1")


def test_a_relative_input_path_is_made_absolute_before_it_is_recorded(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert portable_path("artifacts/models/x", "artifacts") == "models/x"
