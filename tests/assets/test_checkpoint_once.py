"""Each evaluation reads its checkpoint once and hashes its weights once: the measure loads
it, the result records its identity (hashed when loaded), and the result file's inputs
fingerprint takes the checkpoint's part from there. (validation_losses read it twice, and
every evaluation hashed it twice: for the result and again for its inputs fingerprint.)"""

import sys
from collections import Counter

import pytest
from dagster import instance_for_test, materialize

import evaluation.checkpoint as checkpoint_module
from assets.evaluation import ACCEPTABILITY_JUDGE, EVALUATIONS
from assets.partitions import checkpoint_partitions
from assets.resources import JudgeResource
from tests.assets.test_acceptability_asset import equality_judge
from tests.evaluation.openai_server import FakeOpenAIServer
from trainer.checkpoint import WEIGHTS_FILE

CONFIGS = {"validation_losses": {"max_tokens": 200}, "fact_leakage": {"limit": 1}, "acceptability": {"documents": 1},
           "nlu": {"limit": 2}, "cascade_generations": {"limit": 1, "max_new_tokens": 4, "split": "all"}}


@pytest.fixture
def counted(monkeypatch):
    """Counters of `read_checkpoint` calls (wherever it was imported) and of the files
    `checkpoint_fingerprint` hashes, by path."""
    reads, hashes = Counter(), Counter()
    read, sha = checkpoint_module.read_checkpoint, checkpoint_module.file_sha256

    def counting_read(path):
        reads[str(path)] += 1
        return read(path)

    def counting_sha(path, *args):
        hashes[str(path)] += 1
        return sha(path, *args)

    ours = [m for name, m in list(sys.modules.items()) if name.split(".")[0] in ("assets", "evaluation", "trainer", "pipelines")]
    for module in [m for m in ours if getattr(m, "read_checkpoint", None) is read]:
        monkeypatch.setattr(module, "read_checkpoint", counting_read)
    monkeypatch.setattr(checkpoint_module, "file_sha256", counting_sha)
    return reads, hashes


@pytest.mark.parametrize("name", list(CONFIGS))
def test_one_read_and_one_hash_per_evaluation(tiny_storage, counted, name):
    storage, key = tiny_storage
    reads, hashes = counted
    config = CONFIGS[name] | ({"partner": str(storage.path("models", key))} if name == "cascade_generations" else {})  # itself
    evaluation = next(e for e in EVALUATIONS if e.name == name)
    with instance_for_test() as instance, FakeOpenAIServer(equality_judge) as server:
        instance.add_dynamic_partitions(checkpoint_partitions.name, [key])
        judge = JudgeResource(engine="openai", model="judge", base_url=server.base_url, api_key_env="")
        result = materialize([evaluation.asset], partition_key=key, instance=instance,
                             resources={"storage": storage, ACCEPTABILITY_JUDGE: judge},
                             run_config={"ops": {name: {"config": config}}})
    assert result.success and result.get_asset_materialization_events()
    checkpoint = storage.path("models", key)
    assert reads == {str(checkpoint): 1}
    assert hashes[str(checkpoint / WEIGHTS_FILE)] == 1
