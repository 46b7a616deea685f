import email.utils

import pytest

from evaluation.backends.endpoint import EndpointError, retry_delay
from evaluation.backends.text import (
    CachedLLM,
    LLMConfig,
    OpenAICompatibleLLM,
    TextLLM,
    TransformersLLM,
    encode_prompt,
    load_llm,
    truncate_at_stop,
)
from evaluation.factscore.knowledge import BM25Retrieval
from evaluation.factscore.score import judge_support, support_prompt
from tests.evaluation.factscore.factscore_fixtures import ScriptedLLM, small_knowledge
from tests.evaluation.openai_server import FakeOpenAIServer


def canned(fail_first: int = 0):
    """Answers like a judge: the first `fail_first` requests get HTTP 500, a prompt containing
    "bad request" gets 400."""
    seen = []

    def respond(path, body):
        seen.append(path)
        if len(seen) <= fail_first:
            return 500, {}, {"error": "try again"}
        text = body.get("prompt") or body["messages"][0]["content"]
        if "bad request" in text:
            return 400, {}, {"error": "bad request"}
        if path.endswith("/chat/completions"):
            return 200, {}, {"choices": [{"message": {"role": "assistant", "content": "True."}}]}
        return 200, {}, {"choices": [{"text": "\n- A fact.\n- Another fact.\n\nPlease breakdown"}]}

    return respond


def test_truncate_at_stop():
    assert truncate_at_stop("- a\n- b\n\nPlease", ["\n\n"]) == "- a\n- b"
    assert truncate_at_stop("abc", ["x", "b", "c"]) == "a"
    assert truncate_at_stop("abc", []) == "abc"


def test_chat_endpoint_receives_the_exact_support_prompt(tmp_path, monkeypatch):
    monkeypatch.setenv("LACY_TEST_JUDGE_KEY", "sk-test")
    ks = small_knowledge(tmp_path)
    with FakeOpenAIServer(canned()) as server:
        judge = OpenAICompatibleLLM(server.base_url, "judge-model", api="chat", api_key_env="LACY_TEST_JUDGE_KEY")
        assert isinstance(judge, TextLLM)
        decisions = judge_support([("Ralph Earl", "Ralph Earl was a painter.")], BM25Retrieval(ks), judge)
    assert decisions == [{"atom": "Ralph Earl was a painter.", "is_supported": True, "answer": "True."}]
    (request,) = server.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["auth"] == "Bearer sk-test"
    expected = support_prompt("Ralph Earl", "Ralph Earl was a painter.", ks.passages("Ralph Earl"))
    assert request["body"] == {
        "model": "judge-model",
        "max_tokens": 32,
        "temperature": 0.0,
        "messages": [{"role": "user", "content": expected}],
    }


def test_completions_endpoint_stop_and_retries():
    with FakeOpenAIServer(canned(fail_first=1)) as server:
        llm = OpenAICompatibleLLM(server.base_url, "facts", api="completions", api_key_env=None, backoff_s=0.01)
        assert llm.generate(["Please breakdown ...: X."], 64, stop=["\n\n"]) == ["\n- A fact.\n- Another fact."]
        with pytest.raises(EndpointError, match="HTTP 400"):
            llm.generate(["a bad request"], 8)
    first, retried, bad = server.requests
    assert first["body"] == retried["body"] and first["path"] == "/v1/completions" and first["auth"] is None
    assert first["body"] == {
        "model": "facts",
        "max_tokens": 64,
        "temperature": 0.0,
        "prompt": "Please breakdown ...: X.",
        "stop": ["\n\n"],
    }
    assert len(server.requests) == 3  # a 400 is not retried


def test_load_llm_from_config_values(tmp_path):
    config = LLMConfig("openai-completions", "m", base_url="http://127.0.0.1:9/v1", api_key_env=None, concurrency=3)
    llm = load_llm(config, cache_path=tmp_path / "c.jsonl")
    assert isinstance(llm, CachedLLM) and llm.name == "openai-completions:http://127.0.0.1:9/v1:m"
    assert llm.llm.endpoint.config.concurrency == 3 and llm.llm.endpoint.config.api_key_env is None
    with pytest.raises(ValueError, match="base_url"):
        load_llm(LLMConfig("openai-chat", "m"))
    with pytest.raises(ValueError, match="unknown backend"):
        load_llm(LLMConfig("llama.cpp", "m"))


# --- the HTTP client: retries, Retry-After, connection reuse ----------------------------

def test_retry_delay_hand_worked():
    assert retry_delay({"Retry-After": "3"}, attempt=0, backoff_s=1.0, max_wait_s=60.0) == 3.0
    assert retry_delay({"retry-after-ms": "250", "retry-after": "9"}, 0, 1.0, 60.0) == 0.25  # OpenAI's, finer
    date = email.utils.formatdate(1000.0 + 7, usegmt=True)  # an HTTP date 7 s after "now"
    assert retry_delay({"Retry-After": date}, 0, 1.0, 60.0, now=1000.0) == 7.0
    assert retry_delay({"Retry-After": "120"}, 0, 1.0, 60.0) == 60.0  # capped
    assert retry_delay({"Retry-After": "-5"}, 3, 1.0, 60.0) == 8.0  # not a number or a date: back off
    assert retry_delay({}, attempt=2, backoff_s=0.5, max_wait_s=60.0) == 2.0  # 0.5 * 2**2
    assert retry_delay({}, attempt=10, backoff_s=0.5, max_wait_s=60.0) == 60.0


def test_429_waits_as_long_as_retry_after_then_succeeds():
    answers = iter([(429, {"Retry-After": "1"}, {"error": "slow down"}),
                    (200, {}, {"choices": [{"text": "fine"}]})])
    with FakeOpenAIServer(lambda path, body: next(answers)) as server:
        llm = OpenAICompatibleLLM(server.base_url, "m", api="completions", api_key_env=None, backoff_s=0.001)
        assert llm.generate(["x"], 4) == ["fine"]
    limited, retried = server.requests
    assert limited["body"] == retried["body"]
    assert retried["time"] - limited["time"] >= 1.0  # the server's second, not the 1 ms backoff


def test_retries_are_bounded():
    with FakeOpenAIServer(lambda path, body: (503, {"Retry-After": "0"}, {"error": "down"})) as server:
        llm = OpenAICompatibleLLM(server.base_url, "m", api="completions", api_key_env=None, max_retries=2)
        with pytest.raises(EndpointError, match="HTTP 503"):
            llm.generate(["x"], 4)
    assert len(server.requests) == 3  # the first attempt and two retries
    refused = OpenAICompatibleLLM("http://127.0.0.1:9/v1", "m", api_key_env=None, max_retries=1, backoff_s=0.001)
    with pytest.raises(EndpointError, match="ConnectError"):  # nothing listens on port 9
        refused.generate(["x"], 4)


def test_connections_are_reused():
    with FakeOpenAIServer(lambda path, body: (200, {}, {"choices": [{"text": body["prompt"]}]})) as server:
        one = OpenAICompatibleLLM(server.base_url, "m", api="completions", api_key_env=None, concurrency=1)
        assert [one.generate([p], 4)[0] for p in "abc"] == ["a", "b", "c"]
        two = OpenAICompatibleLLM(server.base_url, "m", api="completions", api_key_env=None, concurrency=2)
        assert two.generate(list("defghi"), 4) == list("defghi")
    ports = [r["port"] for r in server.requests]
    assert len(set(ports[:3])) == 1  # three calls, one connection
    assert len(set(ports[3:])) <= 2  # six prompts over at most two


def test_cached_llm_answers_once_and_survives_restarts(tmp_path):
    inner = ScriptedLLM(lambda p: p.upper())
    cache = tmp_path / "cache.jsonl"
    llm = CachedLLM(inner, cache)
    assert llm.generate(["a", "b", "a"], 4) == ["A", "B", "A"]
    assert inner.calls[0][0] == ["a", "b"]
    with open(cache, "a") as f:
        f.write('{"key": "cut by a cra')  # a line cut by a crash is ignored
    again = CachedLLM(inner, cache)
    assert again.generate(["b", "c"], 4) == ["B", "C"]
    assert inner.calls[1][0] == ["c"]
    assert again.generate(["c"], 5) == ["C"] and inner.calls[2][0] == ["c"]  # other settings, other key


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    """A randomly initialised 1-layer GPT-2 with a SentencePiece tokenizer trained here."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from pipelines.corpus import read_source
    from pipelines.tokenizer import Tokenizer, TokenizerConfig, save_hf_tokenizer, train_tokenizer

    root = tmp_path_factory.mktemp("tiny-lm")
    texts = [r.text for _, r in zip(range(60), read_source("embedded:dwiki"))]
    tok_path = train_tokenizer(texts, root / "tok", TokenizerConfig(vocab_size=400))
    model_dir = root / "model"
    save_hf_tokenizer(tok_path, model_dir)
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=Tokenizer(tok_path).vocab_size, n_positions=64, n_embd=32, n_layer=1, n_head=2,
                        bos_token_id=1, eos_token_id=2)  # fmt: skip
    GPT2LMHeadModel(config).save_pretrained(model_dir)
    return model_dir


def test_transformers_backend_batches_truncates_and_stops(tiny_model_dir):
    llm = TransformersLLM(tiny_model_dir, batch_size=3)
    assert llm.max_context == 64 and llm.name.startswith("transformers:")
    long_prompt = "Ralph Earl was an American painter known for his portraits. " * 12  # > 64 tokens
    prompts = ["Ralph Earl was", long_prompt, "He painted a panorama of Niagara Falls"]
    batched = llm.generate(prompts, max_new_tokens=6)
    single = [TransformersLLM(tiny_model_dir, batch_size=1).generate([p], max_new_tokens=6)[0] for p in prompts]
    assert batched == single and all(isinstance(t, str) for t in batched)
    # the long prompt keeps its last 64 - 6 tokens, as FActScore's clm.py does
    ids = llm.tokenizer(long_prompt)["input_ids"]
    assert len(ids) > 64 and encode_prompt(llm.tokenizer, long_prompt, False, 58) == ids[-58:]
    text = batched[0]
    assert len(text.strip()) >= 3
    stop = text.strip()[1:3]  # stops inside the generated text only, never across the prompt's end
    assert llm.generate(prompts[:1], 6, stop=[stop]) == [truncate_at_stop(text, [stop])]


def test_chat_prompts_use_the_model_template(tiny_model_dir):
    llm = TransformersLLM(tiny_model_dir, chat=True)
    llm.tokenizer.chat_template = "{% for m in messages %}[user] {{ m['content'] }}{% endfor %} [assistant]"
    expected = llm.tokenizer("[user] Is it true? [assistant]", add_special_tokens=False)["input_ids"]
    assert encode_prompt(llm.tokenizer, "Is it true?", True, None) == expected
    assert len(llm.generate(["Is it true?"], 3)) == 1


def test_vllm_backend_needs_vllm():
    pytest.importorskip("torch")
    try:
        import vllm  # noqa: F401
    except ImportError:
        from evaluation.backends.text import VLLMLLM

        with pytest.raises(ImportError, match="vLLM"):
            VLLMLLM("/nonexistent")
    else:
        pytest.skip("vLLM is installed: the GPU check runs it instead")
