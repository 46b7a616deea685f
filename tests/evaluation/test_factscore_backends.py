import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from evaluation.factscore import judge_support, support_prompt
from evaluation.knowledge import BM25Retrieval
from evaluation.llm_backends import (
    CachedLLM,
    EndpointError,
    OpenAICompatibleLLM,
    TextLLM,
    TransformersLLM,
    encode_prompt,
    load_llm,
    truncate_at_stop,
)
from tests.evaluation.factscore_fixtures import ScriptedLLM, small_knowledge


class _CannedServer:
    """An OpenAI-compatible endpoint on 127.0.0.1 that records requests and answers from
    a script: `fail_first` requests get HTTP 500, a prompt containing "bad request" 400."""

    def __init__(self, fail_first: int = 0):
        self.requests: list[dict] = []
        self.fail_first = fail_first
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                if len(server.requests) <= server.fail_first:
                    return self._reply(500, {"error": "try again"})
                text = body.get("prompt") or body["messages"][0]["content"]
                if "bad request" in text:
                    return self._reply(400, {"error": "bad request"})
                if self.path.endswith("/chat/completions"):
                    return self._reply(200, {"choices": [{"message": {"role": "assistant", "content": "True."}}]})
                return self._reply(200, {"choices": [{"text": "\n- A fact.\n- Another fact.\n\nPlease breakdown"}]})

            def _reply(self, code, payload):
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def test_truncate_at_stop():
    assert truncate_at_stop("- a\n- b\n\nPlease", ["\n\n"]) == "- a\n- b"
    assert truncate_at_stop("abc", ["x", "b", "c"]) == "a"
    assert truncate_at_stop("abc", []) == "abc"


def test_chat_endpoint_receives_the_exact_support_prompt(tmp_path, monkeypatch):
    monkeypatch.setenv("LACY_TEST_JUDGE_KEY", "sk-test")
    ks = small_knowledge(tmp_path)
    with _CannedServer() as server:
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
    with _CannedServer(fail_first=1) as server:
        llm = OpenAICompatibleLLM(server.base_url, "facts", api="completions", api_key_env=None, backoff_s=0.01)
        assert llm.generate(["Please breakdown ...: X."], 64, stop=["\n\n"]) == ["\n- A fact.\n- Another fact."]
        with pytest.raises(EndpointError, match="HTTP 400"):
            llm.generate(["a bad request"], 8)
    first, retried, bad = server.requests
    assert first == retried and first["path"] == "/v1/completions" and first["auth"] is None
    assert first["body"] == {
        "model": "facts",
        "max_tokens": 64,
        "temperature": 0.0,
        "prompt": "Please breakdown ...: X.",
        "stop": ["\n\n"],
    }
    assert len(server.requests) == 3  # a 400 is not retried


def test_load_llm_from_config_values(tmp_path):
    llm = load_llm("openai-completions", "m", base_url="http://127.0.0.1:9/v1", cache_path=tmp_path / "c.jsonl")
    assert isinstance(llm, CachedLLM) and llm.name == "openai-completions:http://127.0.0.1:9/v1:m"
    with pytest.raises(ValueError, match="base_url"):
        load_llm("openai-chat", "m")
    with pytest.raises(ValueError, match="unknown backend"):
        load_llm("llama.cpp", "m")


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
        from evaluation.llm_backends import VLLMLLM

        with pytest.raises(ImportError, match="vLLM"):
            VLLMLLM("/nonexistent")
    else:
        pytest.skip("vLLM is installed: the GPU check runs it instead")
