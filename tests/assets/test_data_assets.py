"""The data assets materialize in Dagster (in process) with their metadata and passing checks."""


def test_data_assets_materialize_with_metadata_and_checks(data_assets):
    _, _, metadata, checks = data_assets
    assert metadata["raw_corpus"]["documents"] == 16
    tokens = metadata["token_shards"]
    assert tokens["documents"] == 16 and 0.2 < tokens["fact_fraction"] < 0.5
    assert "data:image/png;base64" in tokens["fact_fraction_per_document"]
    judge = metadata["lmlm_judge_labels"]
    assert judge["annotated_documents"] == 16 and judge["values_placed"] > 0
    assert metadata["extra_token_shards"]["documents"] == 16
    assert {c.check_name for c in checks} == {"token_shards_aligned", "fact_fraction", "judge_labels_aligned"}
    assert all(c.passed for c in checks)


def test_a_failed_alignment_check_fails_the_shards_run(data_assets, tmp_path, monkeypatch):
    """Misaligned shards (here: a document that does not decode back) fail their run, so the
    judge labels and the models wait; the trainer's own length checks guard runs without the check."""
    import shutil

    from dagster import materialize

    import assets.data
    from assets.data import SHARD_CHECKS, token_shards
    from assets.resources import LacyStorage

    storage, root, _, _ = data_assets
    shutil.copytree(storage.path(), tmp_path / "artifacts")
    verify = assets.data.verify_shard
    monkeypatch.setattr(assets.data, "verify_shard", lambda *a: {**verify(*a), "docs_not_round_tripping": 1})
    result = materialize([token_shards, *SHARD_CHECKS], resources={"storage": LacyStorage(root=str(tmp_path / "artifacts"))},
                         partition_key="0001", raise_on_error=False)
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks["token_shards_aligned"] is False and not result.success
