"""The local engine (`TransformersBackend`): judge generation (batched, truncated, stop
strings, chat template) and partner next tokens from one loaded model; the shared context
lookup and truncation rule (`hf`)."""

import types

import pytest
import torch

from evaluation.backends.hf import context_length, encode_prompt, last_tokens
from evaluation.backends.partners import PartnerQuery, continuation_text, penalize_rows
from evaluation.backends.text import TextLLM, truncate_at_stop
from evaluation.backends.transformers_backend import TransformersBackend


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    """A randomly initialised 1-layer GPT-2 with a SentencePiece tokenizer trained here."""
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


def test_context_length_is_one_lookup():
    assert context_length(types.SimpleNamespace(max_position_embeddings=2048, n_positions=64)) == 2048
    assert context_length(types.SimpleNamespace(n_positions=64)) == 64  # GPT-2's own name
    assert context_length(types.SimpleNamespace(seq_length=0, max_sequence_length=512)) == 512  # 0 is no context
    assert context_length(types.SimpleNamespace()) is None
    assert last_tokens([1, 2, 3, 4], 2) == [3, 4] and last_tokens([1, 2], None) == [1, 2]
    with pytest.raises(ValueError, match="at least one token"):
        last_tokens([1, 2], 0)


def test_transformers_backend_batches_truncates_and_stops(tiny_model_dir):
    llm = TransformersBackend(tiny_model_dir, batch_size=3)
    assert isinstance(llm, TextLLM)
    assert llm.max_context == 64 and llm.name.startswith("transformers:")
    long_prompt = "Ralph Earl was an American painter known for his portraits. " * 12  # > 64 tokens
    prompts = ["Ralph Earl was", long_prompt, "He painted a panorama of Niagara Falls"]
    batched = llm.generate(prompts, max_new_tokens=6)
    single = [TransformersBackend(tiny_model_dir, batch_size=1).generate([p], max_new_tokens=6)[0] for p in prompts]
    assert batched == single and all(isinstance(t, str) for t in batched)
    # the long prompt keeps its last 64 - 6 tokens, as FActScore's clm.py does
    ids = llm.tokenizer(long_prompt)["input_ids"]
    assert len(ids) > 64 and encode_prompt(llm.tokenizer, long_prompt, False, 58) == ids[-58:]
    text = batched[0]
    assert len(text.strip()) >= 3
    stop = text.strip()[1:3]  # stops inside the generated text only, never across the prompt's end
    assert llm.generate(prompts[:1], 6, stop=[stop]) == [truncate_at_stop(text, [stop])]
    with pytest.raises(ValueError, match="leaves no input"):
        llm.generate(prompts[:1], 64)


def test_chat_prompts_use_the_model_template(tiny_model_dir):
    llm = TransformersBackend(tiny_model_dir, chat=True)
    llm.tokenizer.chat_template = "{% for m in messages %}[user] {{ m['content'] }}{% endfor %} [assistant]"
    expected = llm.tokenizer("[user] Is it true? [assistant]", add_special_tokens=False)["input_ids"]
    assert encode_prompt(llm.tokenizer, "Is it true?", True, None) == expected
    assert len(llm.generate(["Is it true?"], 3)) == 1


def test_one_loaded_model_serves_judge_and_partner(tiny_model_dir):
    """The partner's top two come from the same weights the judge generates with: its greedy
    next token (no penalty) is the first token `generate` writes, and a long input keeps its
    last `max_context` tokens."""
    backend = TransformersBackend(tiny_model_dir, repetition_penalty=1.0)
    text = "Ralph Earl was an American painter"
    (reply,) = backend.top_tokens([PartnerQuery(0, text)])
    ids = backend.tokenizer(text).input_ids
    with torch.no_grad():
        logits = backend.model(input_ids=torch.tensor([ids])).logits[0, -1]
    first, second = logits.topk(2).indices.tolist()
    assert reply.candidates == (continuation_text(backend.tokenizer, ids, first), continuation_text(backend.tokenizer, ids, second))
    assert reply.tokens_processed == len(ids)
    written = backend.generate([text], 1)[0]
    assert written == backend.tokenizer.decode([first], skip_special_tokens=True)
    long = "the cat sat on the mat . " * 40
    long_ids = backend.tokenizer(long).input_ids
    assert len(long_ids) > 64
    (long_reply,) = backend.top_tokens([PartnerQuery(1, long)])
    assert long_reply.tokens_processed == 64  # the last 64 tokens, the model's context
    with torch.no_grad():
        tail = backend.model(input_ids=torch.tensor([long_ids[-64:]])).logits[0, -1]
    best = penalize_rows(tail[None], [long_ids[-64:]], 1.0)[0].argmax()
    assert long_reply.candidates[0] == continuation_text(backend.tokenizer, long_ids[-64:], int(best))
