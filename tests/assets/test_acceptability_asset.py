"""The acceptability asset (issue 20 item 4): partitioned by checkpoint like the other
evaluations; it waits, named in the sensor's log, until a judge is configured, and without
one it evaluates nothing and calls no judge. With the stand-in OpenAI-compatible server as
the configured judge it writes its result, token table and Figure 3, and the report shows
its section."""

import re

import pyarrow.parquet as pq
from dagster import AssetKey, instance_for_test, materialize

from assets.evaluation import ACCEPTABILITY_JUDGE, EVALUATIONS, JUDGE_ENV, NO_JUDGE
from assets.partitions import checkpoint_partitions
from assets.report import report_asset
from assets.resources import JudgeResource
from assets.results import read_result, result_path
from evaluation.measures.acceptability import FIGURE_FILE, TABLE_FILE
from tests.assets.ticks import sensor_tick
from tests.evaluation.openai_server import FakeOpenAIServer

ACCEPTABILITY = next(e for e in EVALUATIONS if e.name == "acceptability")
TASK = re.compile(r"# Your Task\n\*\*starting_text\*\*: '(.*)'\n\*\*proposed_next_token\*\*: '(.*)'\n"
                  r"\*\*reference_next_token\*\*: '(.*)'\n\*\*explanation\*\*:$", re.DOTALL)


def equality_judge(path, body):
    """A chat endpoint: valid iff the proposed token (as quoted) equals the reference."""
    _, proposed, reference = TASK.search(body["messages"][0]["content"]).groups()
    return 200, {}, {"choices": [{"message": {"content": f"**explanation**: stand-in.\n**output**: {int(proposed == reference)}"}}]}


def mark_done(storage, key: str, names: list[str]) -> None:
    for name in names:
        result_path(storage, key, name).parent.mkdir(parents=True, exist_ok=True)
        result_path(storage, key, name).write_text("{}")


def requested(data, key: str) -> set[AssetKey]:
    return {k for r in data.run_requests if r.partition_key == key for k in r.asset_selection}


def test_waits_for_a_judge_then_is_requested_and_evaluated(tiny_storage):
    storage, key = tiny_storage
    assert ACCEPTABILITY.asset.partitions_def == checkpoint_partitions
    with instance_for_test() as instance, FakeOpenAIServer(equality_judge) as server:
        none = {"storage": storage, ACCEPTABILITY_JUDGE: JudgeResource()}
        first = sensor_tick(instance, none)
        assert AssetKey("acceptability") not in requested(first, key)
        assert AssetKey("validation_losses") in requested(first, key)  # the others are not held up
        mark_done(storage, key, [e.name for e in EVALUATIONS if e is not ACCEPTABILITY])  # only acceptability is left
        waiting = sensor_tick(instance, none)
        assert not waiting.run_requests and f"{key}: acceptability waits on {NO_JUDGE}" in waiting.skip_message

        # materialized without a judge (as `make evaluate`'s evaluation_job would): nothing evaluated, no judge called
        unjudged = materialize([ACCEPTABILITY.asset], partition_key=key, instance=instance, resources=none)
        assert unjudged.success and not unjudged.get_asset_materialization_events()
        assert not result_path(storage, key, "acceptability").exists() and not server.requests

        judge = JudgeResource(engine="openai", model="judge", base_url=server.base_url, api_key_env="", concurrency=2)
        configured = {"storage": storage, ACCEPTABILITY_JUDGE: judge}
        (request,) = sensor_tick(instance, configured).run_requests
        assert request.asset_selection == [AssetKey("acceptability")] and request.partition_key == key

        evaluated = materialize([ACCEPTABILITY.asset], partition_key=key, instance=instance, resources=configured,
                                run_config={"ops": {"acceptability": {"config": {"documents": 2}}}})
        assert evaluated.success
    result = read_result(storage, key, "acceptability")
    assert result["documents"] == 2 and result["judge"] == f"a1:openai-chat:{server.base_url}:judge"
    assert result["judge_queries"] == result["overall"]["all"]["tokens"]  # A.1: every position
    prompts = [r["body"]["messages"][0]["content"] for r in server.requests]
    assert 0 < len(prompts) == len(set(prompts))  # each distinct query asked once (the cache answers repeats)
    assert result["inputs_fingerprint"] == ACCEPTABILITY.inputs_fingerprint(result["checkpoint"]["fingerprint"])
    tokens = pq.read_table(result_path(storage, key, "acceptability").parent / TABLE_FILE)
    assert tokens.num_rows == result["judge_queries"]
    assert tokens.column("acceptable").to_pylist() == [int(c) for c in tokens.column("correct").to_pylist()]  # the stand-in's rule
    (event,) = evaluated.get_asset_materialization_events()
    metadata = event.materialization.metadata
    assert metadata["tokens"].value == result["overall"]["all"]["tokens"] and "data:image/png;base64" in metadata["figure_3"].value
    assert (result_path(storage, key, "acceptability").parent / FIGURE_FILE).exists()

    assert materialize([report_asset(EVALUATIONS)], resources={"storage": storage}).success
    report = storage.path("report", "report.md").read_text()
    assert "## Figure 3: accuracy and acceptability by loss bin" in report and "![Figure 3: Baseline](acceptability_baseline.png)" in report
    assert storage.path("report", "acceptability_baseline.png").exists()


def test_the_judge_is_only_what_the_environment_names(monkeypatch):
    for name in JudgeResource.model_fields:
        monkeypatch.delenv(JUDGE_ENV + name.upper(), raising=False)
    assert JudgeResource.from_env(JUDGE_ENV) == JudgeResource() and JudgeResource().engine == "" and not JudgeResource().base_url
    monkeypatch.setenv(JUDGE_ENV + "ENGINE", "openai")
    monkeypatch.setenv(JUDGE_ENV + "BASE_URL", "http://127.0.0.1:8000/v1")
    monkeypatch.setenv(JUDGE_ENV + "CONCURRENCY", "16")
    assert JudgeResource.from_env(JUDGE_ENV) == JudgeResource(engine="openai", base_url="http://127.0.0.1:8000/v1", concurrency=16)
