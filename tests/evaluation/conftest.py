"""Tiny stand-in checkpoints in the trainer's layout and a tiny token dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from evaluation.checkpoint import write_random_checkpoint
from pipelines.files import file_sha256, write_json
from pipelines.shards import MANIFEST, TOKEN_SCHEMA, list_array, shard_name, write_table
from pipelines.tokenizer import MODEL_FILE, Tokenizer, TokenizerConfig, train_tokenizer

SENTENCES = [
    "The cat sat on the mat and looked at the garden.",
    "Ralph Earl was an American painter who was born in 1751 in Massachusetts.",
    "Paris is the capital of France, and Berlin is the capital of Germany.",
    "She played the piano every morning before school started.",
    "The river flows through the old town and into the sea.",
    "In 1987 the company moved its offices to a larger building.",
    "He wrote three novels and many short stories about the war.",
    "The weather was cold, but the children played outside all day.",
    "A small bird sang on the branch of the tall tree.",
    "The museum holds paintings by artists from many countries.",
    "They travelled by train from London to Edinburgh in the summer.",
    "The team won the championship after a long and difficult season.",
]
REPEATED = "the cat sat on the mat . "
torch.set_flush_denormal(True)  # NOTES.md: without it small CPU models slow down several-fold


@pytest.fixture(scope="package", autouse=True)
def one_thread():
    """Tiny models gain nothing from a second thread, and the machine's cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def sentences() -> list[str]:
    return SENTENCES


@pytest.fixture(scope="session")
def tokenizer_path(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tokenizer")
    return train_tokenizer(SENTENCES * 20 + [REPEATED] * 20, out, TokenizerConfig(vocab_size=400))


@pytest.fixture(scope="session")
def tok(tokenizer_path) -> Tokenizer:
    return Tokenizer(tokenizer_path)


def _config(tok: Tokenizer) -> GPT2Config:
    return GPT2Config(vocab_size=tok.vocab_size, n_embd=32, n_layer=2, n_head=2, n_positions=128,
                      bos_token_id=tok.bos_id, eos_token_id=tok.eos_id)


@pytest.fixture(scope="session")
def random_checkpoint(tmp_path_factory, tokenizer_path) -> Path:
    return write_random_checkpoint(tmp_path_factory.mktemp("ckpt") / "random", tokenizer_path, seed=0)


@pytest.fixture(scope="session")
def random_partner(tmp_path_factory, tokenizer_path) -> Path:
    return write_random_checkpoint(tmp_path_factory.mktemp("ckpt") / "partner", tokenizer_path, seed=1,
                                   n_positions=512, method="reference")


@pytest.fixture(scope="session")
def trained_checkpoint(tmp_path_factory, tok, tokenizer_path) -> Path:
    """A tiny GPT-2 trained for 60 steps on one repeated sentence: greedy decoding after
    "the cat" continues it."""
    torch.manual_seed(0)
    model = GPT2LMHeadModel(_config(tok))
    ids = torch.tensor([[tok.eos_id] + tok.encode(REPEATED * 8).tolist()])[:, :128]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(60):
        loss = model(input_ids=ids, labels=ids).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return write_random_checkpoint(tmp_path_factory.mktemp("ckpt") / "trained", tokenizer_path, model=model,
                                   method="reference")


@pytest.fixture(scope="session")
def foreign_partner(tmp_path_factory, sentences) -> Path:
    """A random GPT-2 with its own byte-level BPE tokenizer (GPT-2/Llama-3 style: "Ġcat",
    whole numbers as one token), as a partner whose vocabulary differs from ours."""
    from tokenizers import Tokenizer as BPETokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = BPETokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(sentences * 30 + [REPEATED] * 30, trainers.BpeTrainer(
        vocab_size=500, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    out = tmp_path_factory.mktemp("ckpt") / "foreign"
    PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>").save_pretrained(out)
    torch.manual_seed(2)
    GPT2LMHeadModel(GPT2Config(vocab_size=bpe.get_vocab_size(), n_embd=32, n_layer=2, n_head=2, n_positions=512,
                               bos_token_id=0, eos_token_id=0)).save_pretrained(out)
    return out


def write_token_dataset(out_dir: Path, tok: Tokenizer, docs: list[tuple[str, str]], num_shards: int = 2) -> Path:
    """A token dataset directory in the pipeline's layout: (text, split) documents; every
    third token is a fact (class 2), the rest grammatical (0)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MODEL_FILE).write_bytes(tok.path.read_bytes())
    shards = []
    for k in range(num_shards):
        rows = docs[k::num_shards]
        ids = [tok.encode(text) for text, _ in rows]
        cls = [np.where(np.arange(len(a)) % 3 == 2, 2, 0).astype(np.int8) for a in ids]
        table = pa.table([pa.array([f"doc{k}-{i}" for i in range(len(rows))]), pa.array([s for _, s in rows]),
                          list_array(ids, pa.int32()), list_array(cls, pa.int8())], schema=TOKEN_SCHEMA)
        shards.append({"file": shard_name(k), "sha256": write_table(out_dir / shard_name(k), table)})
    write_json(out_dir / MANIFEST, {"fingerprint": "test-dataset", "shards": shards,
                                    "tokenizer": {"sha256": file_sha256(tok.path), "vocab_size": tok.vocab_size,
                                                  "call_token_id": tok.call_id, "eos_id": tok.eos_id}})
    return out_dir


@pytest.fixture(scope="session")
def token_dataset(tmp_path_factory, tok) -> Path:
    docs = [(s, "validation" if i % 3 == 1 else "train") for i, s in enumerate(SENTENCES)]
    return write_token_dataset(tmp_path_factory.mktemp("data") / "token_shards", tok, docs)
