"""A fake OpenAI-compatible server on 127.0.0.1 for the judge and partner backends' tests."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.generation.logits_process import RepetitionPenaltyLogitsProcessor

# (path, JSON body) -> (status, extra headers, JSON payload)
Respond = Callable[[str, dict], tuple[int, dict[str, str], dict]]


class FakeOpenAIServer:
    """Answers each POST with `respond(path, body)` over HTTP/1.1 with keep-alive, and records
    every request: path, Authorization header, body, the client's port (one per
    connection) and its arrival time (`time.monotonic()`)."""

    def __init__(self, respond: Respond):
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keeps connections open between requests

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body,
                                        "port": self.client_address[1], "time": time.monotonic()})
                status, headers, payload = respond(self.path, body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
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

    def __enter__(self) -> FakeOpenAIServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def completions_like_vllm(model_dir):
    """A fake server's answer to a one-token completion with `logprobs`, as vLLM's server
    gives it when started with `--logprobs-mode processed_logprobs`: the model's next-token
    log-probabilities after the requested repetition penalty, keyed by token text, and the
    usage with 2 prompt tokens served from its cache."""
    tokenizer, model = AutoTokenizer.from_pretrained(model_dir), AutoModelForCausalLM.from_pretrained(model_dir)

    @torch.no_grad()
    def respond(path, body):
        if path != "/v1/completions":
            return 404, {}, {"error": f"no route {path}"}
        ids = torch.tensor([tokenizer(body["prompt"]).input_ids])
        penalize = RepetitionPenaltyLogitsProcessor(body.get("repetition_penalty", 1.0))
        logprobs = torch.log_softmax(penalize(ids, model(ids).logits[:, -1])[0], dim=-1)
        top = logprobs.topk(body["logprobs"])
        greedy = tokenizer.decode([int(top.indices[0])])
        top_logprobs = {tokenizer.decode([int(t)]): float(v) for t, v in zip(top.indices, top.values)}
        return 200, {}, {"choices": [{"text": greedy, "logprobs": {"tokens": [greedy], "top_logprobs": [top_logprobs]}}],
                         "usage": {"prompt_tokens": ids.shape[1], "prompt_tokens_details": {"cached_tokens": 2}}}

    return respond
