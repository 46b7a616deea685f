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
