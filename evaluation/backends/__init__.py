"""The models evaluations talk to, local or served: one family of backends, one engine per
module (`transformers_backend`, `vllm_backend`, `openai_backend`), each loading its model
once and offering both operations, judge generation (`text`) and a cascade partner's next
tokens (`partners`); `hf` holds what local engines share (tokenizer, context length,
truncation), `endpoint` the OpenAI-compatible HTTP client, `config` the one config and
factory (`BackendConfig`, `load_backend`)."""
