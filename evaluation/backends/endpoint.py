"""An OpenAI-compatible HTTP endpoint (vLLM's server, SGLang, llama.cpp, TGI, OpenAI) through
httpx: one connection pool per endpoint (keep-alive, at most `concurrency` connections),
requests of a batch sent concurrently, and bounded retries that wait as long as the server
asks (`Retry-After`). Used by the served engine (`openai_backend.OpenAIBackend`) for judges
and cascade partners alike.
"""

from __future__ import annotations

import email.utils
import os
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
from tqdm.auto import tqdm

# 408 timeout, 409 conflict (lock), 429 rate limit, 5xx server trouble: worth another try
RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class EndpointConfig:
    base_url: str  # ends in /v1, e.g. http://127.0.0.1:8000/v1
    model: str  # the served model's name
    api_key_env: str | None = "OPENAI_API_KEY"  # environment variable holding the API key; None or unset: no key
    concurrency: int = 4  # requests in flight (and pooled connections)
    timeout_s: float = 120.0
    max_retries: int = 5  # retries after the first attempt
    backoff_s: float = 1.0  # wait before the first retry when the server names none; doubles per retry
    max_wait_s: float = 60.0  # the longest single wait, the server's Retry-After included


class EndpointError(RuntimeError):
    """An OpenAI-compatible endpoint that failed or answered in an unexpected shape."""


def retry_delay(headers: Mapping[str, str], attempt: int, backoff_s: float, max_wait_s: float,
                now: float | None = None) -> float:
    """Seconds to wait before retry number `attempt` (0 for the first): what the server asks
    (`retry-after-ms`, which OpenAI sends, else `Retry-After` in seconds or as an HTTP date),
    else `backoff_s * 2**attempt`; never negative, never above `max_wait_s`."""
    headers = {k.lower(): v for k, v in headers.items()}
    asked: float | None = None
    try:
        if "retry-after-ms" in headers:
            asked = float(headers["retry-after-ms"]) / 1000.0
        elif "retry-after" in headers:
            value = headers["retry-after"].strip()
            if value.replace(".", "", 1).isdigit():
                asked = float(value)
            else:
                asked = email.utils.parsedate_to_datetime(value).timestamp() - (time.time() if now is None else now)
    except (TypeError, ValueError):
        asked = None  # unparseable: back off as if none was given
    wait = backoff_s * 2.0**attempt if asked is None else asked
    return min(max(wait, 0.0), max_wait_s)


class OpenAIEndpoint:
    """POSTs JSON to `{base_url}/{path}` and returns the decoded JSON answer."""

    def __init__(self, config: EndpointConfig):
        self.config = config
        api_key = os.environ.get(config.api_key_env) if config.api_key_env else None
        connections = max(1, config.concurrency)
        self.client = httpx.Client(
            base_url=config.base_url.rstrip("/") + "/",
            headers={"Authorization": f"Bearer {api_key}"} if api_key else {},
            timeout=config.timeout_s,
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        )

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """The JSON answer to `body`; retries (at most `max_retries`) connection failures and
        the statuses in `RETRYABLE_STATUS`, waiting `retry_delay` before each."""
        attempt = 0
        while True:
            try:
                response = self.client.post(path, json=body)
            except httpx.TransportError as e:  # refused, reset, timed out
                if attempt == self.config.max_retries:
                    raise EndpointError(f"{self.url(path)}: {type(e).__name__}: {e}") from e
                headers: Mapping[str, str] = {}
            else:
                if response.status_code not in RETRYABLE_STATUS or attempt == self.config.max_retries:
                    return self._decode(path, response)
                headers = response.headers
            time.sleep(retry_delay(headers, attempt, self.config.backoff_s, self.config.max_wait_s))
            attempt += 1

    def post_all(self, path: str, bodies: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """The answers to `bodies`, in order, at most `concurrency` in flight."""
        with ThreadPoolExecutor(max_workers=max(1, self.config.concurrency)) as pool:
            answers = pool.map(lambda body: self.post(path, body), bodies)
            return list(tqdm(answers, total=len(bodies), desc=self.config.model, leave=False, disable=len(bodies) < 2))

    def url(self, path: str) -> str:
        return f"{self.config.base_url.rstrip('/')}/{path}"

    def _decode(self, path: str, response: httpx.Response) -> dict[str, Any]:
        if response.status_code != 200:
            raise EndpointError(f"{self.url(path)}: HTTP {response.status_code} ({response.text[:500]})")
        try:
            return response.json()
        except ValueError as e:
            raise EndpointError(f"{self.url(path)}: not JSON: {response.text[:500]}") from e

    def close(self) -> None:
        self.client.close()
