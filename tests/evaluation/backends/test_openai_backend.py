"""The served engine (`OpenAIBackend`) and its HTTP client: judge generation on both APIs,
partner next tokens from `/completions` log-probs, retries, Retry-After, connection reuse."""

import email.utils

import pytest

from evaluation.backends.endpoint import EndpointError, retry_delay
from evaluation.backends.openai_backend import OpenAIBackend
from evaluation.backends.partners import PartnerQuery, PartnerReply
from evaluation.backends.text import TextLLM
from evaluation.backends.transformers_backend import TransformersBackend
from evaluation.factscore.knowledge import BM25Retrieval
from evaluation.factscore.metric import judge_support, support_prompt
from tests.evaluation.factscore.factscore_fixtures import small_knowledge
from tests.evaluation.openai_server import FakeOpenAIServer, completions_like_vllm


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


def test_chat_endpoint_receives_the_exact_support_prompt(tmp_path, monkeypatch):
    monkeypatch.setenv("LACY_TEST_JUDGE_KEY", "sk-test")
    ks = small_knowledge(tmp_path)
    with FakeOpenAIServer(canned()) as server:
        judge = OpenAIBackend("judge-model", base_url=server.base_url, api="chat", api_key_env="LACY_TEST_JUDGE_KEY")
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
        llm = OpenAIBackend("facts", base_url=server.base_url, api="completions", api_key_env=None, backoff_s=0.01)
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


def test_unknown_api_is_refused():
    with pytest.raises(ValueError, match="api must be one of"):
        OpenAIBackend("m", base_url="http://127.0.0.1:9/v1", api="responses")


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
        llm = OpenAIBackend("m", base_url=server.base_url, api="completions", api_key_env=None, backoff_s=0.001)
        assert llm.generate(["x"], 4) == ["fine"]
    limited, retried = server.requests
    assert limited["body"] == retried["body"]
    assert retried["time"] - limited["time"] >= 1.0  # the server's second, not the 1 ms backoff


def test_retries_are_bounded():
    with FakeOpenAIServer(lambda path, body: (503, {"Retry-After": "0"}, {"error": "down"})) as server:
        llm = OpenAIBackend("m", base_url=server.base_url, api="completions", api_key_env=None, max_retries=2)
        with pytest.raises(EndpointError, match="HTTP 503"):
            llm.generate(["x"], 4)
    assert len(server.requests) == 3  # the first attempt and two retries
    refused = OpenAIBackend("m", base_url="http://127.0.0.1:9/v1", api_key_env=None, max_retries=1, backoff_s=0.001)
    with pytest.raises(EndpointError, match="ConnectError"):  # nothing listens on port 9
        refused.generate(["x"], 4)


def test_connections_are_reused():
    with FakeOpenAIServer(lambda path, body: (200, {}, {"choices": [{"text": body["prompt"]}]})) as server:
        one = OpenAIBackend("m", base_url=server.base_url, api="completions", api_key_env=None, concurrency=1)
        assert [one.generate([p], 4)[0] for p in "abc"] == ["a", "b", "c"]
        two = OpenAIBackend("m", base_url=server.base_url, api="completions", api_key_env=None, concurrency=2)
        assert two.generate(list("defghi"), 4) == list("defghi")
    ports = [r["port"] for r in server.requests]
    assert len(set(ports[:3])) == 1  # three calls, one connection
    assert len(set(ports[3:])) <= 2  # six prompts over at most two


# --- a partner behind an OpenAI-compatible /completions endpoint --------------------------

def test_openai_partner_ranks_like_the_transformers_backend(foreign_partner):
    """A byte-level BPE partner (Qwen/Llama 3 style) served over HTTP gives the candidates the
    local backend computes, and the tokens the server did not take from its cache."""
    texts = ["the cat sat on the mat . the cat", "Ralph Earl was an American painter"]
    queries = [PartnerQuery(i, t) for i, t in enumerate(texts)]
    with FakeOpenAIServer(completions_like_vllm(foreign_partner)) as server:
        partner = OpenAIBackend("qwen-partner", base_url=server.base_url, api_key_env=None, concurrency=2)
        served = partner.top_tokens(queries)
    local = TransformersBackend(foreign_partner).top_tokens(queries)
    assert served[0].candidates == local[0].candidates
    # the second text's top two tokens are byte pieces that both read "\ufffd": the OpenAI
    # format keys log-probs by text, so they are one entry, and the next text comes second
    assert local[1].candidates == ("\ufffd", "\ufffd") and served[1].candidates[0] == "\ufffd"
    assert served[1].candidates[1] not in ("", "\ufffd")
    assert [r.tokens_processed for r in served] == [r.tokens_processed - 2 for r in local]
    first = next(r["body"] for r in server.requests if r["body"]["prompt"] == texts[0])  # concurrent: any order
    assert first == {"model": "qwen-partner", "max_tokens": 1, "temperature": 0.0, "logprobs": 5,
             "repetition_penalty": 1.2, "prompt": texts[0]}


def test_openai_partner_puts_the_greedy_token_first():
    """The server's greedy token (decided after the penalty) leads even when its log-probs
    come before the penalty (vLLM's default `raw_logprobs`), then the best other one."""
    payload = {"choices": [{"text": " b", "logprobs": {"tokens": [" b"],
                                                         "top_logprobs": [{" a": -0.5, " b": -1.0, " c": -2.0}]}}],
               "usage": {"prompt_tokens": 9}}
    with FakeOpenAIServer(lambda path, body: (200, {}, payload)) as server:
        partner = OpenAIBackend("m", base_url=server.base_url, api_key_env=None, repetition_penalty=1.0,
                                max_input_tokens=100)
        (reply,) = partner.top_tokens([PartnerQuery(0, "text")])
    assert reply == PartnerReply((" b", " a"), tokens_processed=9)  # no cache details: every prompt token read
    assert "repetition_penalty" not in server.requests[0]["body"]  # 1.0: a plain OpenAI request
    assert server.requests[0]["body"]["truncate_prompt_tokens"] == 100


def test_one_endpoint_judges_and_partners():
    """One backend object serves both operations: the judge on /chat/completions, the
    partner on /completions, over one connection pool."""
    def respond(path, body):
        if path == "/v1/chat/completions":
            return 200, {}, {"choices": [{"message": {"content": "**output**: 1"}}]}
        return 200, {}, {"choices": [{"text": " x", "logprobs": {"tokens": [" x"], "top_logprobs": [{" x": -0.1, " y": -3.0}]}}],
                         "usage": {"prompt_tokens": 4}}

    with FakeOpenAIServer(respond) as server:
        backend = OpenAIBackend("m", base_url=server.base_url, api_key_env=None, concurrency=1)
        assert backend.generate(["judge this"], 8) == ["**output**: 1"]
        assert backend.top_tokens([PartnerQuery(0, "text")]) == [PartnerReply((" x", " y"), 4)]
    assert [r["path"] for r in server.requests] == ["/v1/chat/completions", "/v1/completions"]
    assert len({r["port"] for r in server.requests}) == 1
