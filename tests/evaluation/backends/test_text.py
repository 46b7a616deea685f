"""The judge operation's shared parts: stop strings and the answer cache."""

from evaluation.backends.text import CachedLLM, truncate_at_stop
from tests.evaluation.factscore.factscore_fixtures import ScriptedLLM


def test_truncate_at_stop():
    assert truncate_at_stop("- a\n- b\n\nPlease", ["\n\n"]) == "- a\n- b"
    assert truncate_at_stop("abc", ["x", "b", "c"]) == "a"
    assert truncate_at_stop("abc", []) == "abc"


def test_cached_llm_answers_once_and_survives_restarts(tmp_path):
    inner = ScriptedLLM(lambda p: p.upper())
    cache = tmp_path / "cache.jsonl"
    llm = CachedLLM(inner, cache)
    assert llm.calls(["a", "b", "a"], 4) == 2  # distinct prompts not cached
    assert llm.generate(["a", "b", "a"], 4) == ["A", "B", "A"]
    assert inner.calls[0][0] == ["a", "b"]
    assert llm.calls(["a", "b", "c"], 4) == 1
    with open(cache, "a") as f:
        f.write('{"key": "cut by a cra')  # a line cut by a crash is ignored
    again = CachedLLM(inner, cache)
    assert again.generate(["b", "c"], 4) == ["B", "C"]
    assert inner.calls[1][0] == ["c"]
    assert again.calls(["c"], 5) == 1  # other settings, other key
    assert again.generate(["c"], 5) == ["C"] and inner.calls[2][0] == ["c"]
