"""NLU through lm-eval: local task YAMLs generated from the stock ones, run offline on a
few documents, with the `<CALL>` logit masked (tests/evaluation/test_lm_eval_model.py)."""

from __future__ import annotations

import pytest
import yaml

from evaluation.measures.nlu import NLU_TASKS, _lm_eval_tasks_dir, _Loader, evaluate_nlu, task_config

DATA_KEYS = {"dataset_path", "dataset_name", "dataset_kwargs", "training_split", "validation_split", "test_split", "tag"}


@pytest.mark.parametrize("task", sorted(NLU_TASKS))
def test_task_config_keeps_the_stock_task_and_points_at_local_files(task):
    stock = yaml.load((_lm_eval_tasks_dir() / NLU_TASKS[task][0]).read_text(), Loader=_Loader)
    ours = task_config(task)
    assert {k: v for k, v in ours.items() if k not in DATA_KEYS} == {k: v for k, v in stock.items() if k not in DATA_KEYS}
    assert ours["task"] == task and ours["dataset_path"] == "json"
    for split, path in ours["dataset_kwargs"]["data_files"].items():
        assert path.startswith("/") and path.endswith(".jsonl.xz")
        assert ours[{"test": "test_split", "validation": "validation_split"}[split]] == split
    assert ours["training_split"] is None


def test_nlu_tasks_run_offline_on_a_few_documents(random_checkpoint, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # data paths must not depend on the working directory
    result = evaluate_nlu(random_checkpoint, limit=4, cache_dir=tmp_path / "hf-datasets", log=lambda s: None)
    assert set(result["tasks"]) == set(NLU_TASKS)
    for task, metrics in result["tasks"].items():
        assert metrics["samples"] == 4 and 0.0 <= metrics["acc"] <= 1.0
        assert ("acc_norm" in metrics) == (task != "social_iqa")  # SIQA's stock YAML reports acc only
    assert result["lm_eval_version"] == "0.4.13"
