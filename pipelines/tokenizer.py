"""The SentencePiece tokenizer (section 5.1, A.3): BPE with digits split and byte
fallback, trained on the train split, with `<CALL>` appended as the last id. The settings
convert exactly to a Hugging Face fast tokenizer (see `fast_tokenizer`)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import sentencepiece as spm
import tokenizers
from sentencepiece import sentencepiece_model_pb2 as sp_pb2

from pipelines.files import atomic_path

CALL_TOKEN = "<CALL>"
MODEL_FILE = "tokenizer.model"
FAST_FILE = "tokenizer.json"  # the same tokenizer for `tokenizers` / AutoTokenizer


@dataclass(frozen=True)
class TokenizerConfig:
    vocab_size: int = 4096  # SentencePiece pieces before <CALL>; the paper uses 32,000
    model_type: str = "bpe"  # unigram does not convert exactly to a HF tokenizer
    character_coverage: float = 0.9995
    max_sentence_length: int = 1 << 16  # bytes; longer lines are dropped from training only
    num_threads: int = 1  # BPE merges are deterministic for a fixed input order


def _training_lines(texts: Iterable[str]) -> Iterator[str]:
    # SentencePiece trains on sentences without line breaks; documents keep theirs at
    # encoding time, where "\n" becomes a byte-fallback piece.
    for text in texts:
        for line in text.split("\n"):
            if line.strip():
                yield line


def train_tokenizer(texts: Iterable[str], out_dir: str | Path, config: TokenizerConfig = TokenizerConfig()) -> Path:
    """Train on `texts` and write `<out_dir>/tokenizer.model` (vocab_size + 1 pieces)."""
    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=_training_lines(texts),
        model_writer=buffer,
        vocab_size=config.vocab_size,
        model_type=config.model_type,
        character_coverage=config.character_coverage,
        max_sentence_length=config.max_sentence_length,
        num_threads=config.num_threads,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        byte_fallback=True,
        split_digits=True,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        minloglevel=2,
    )
    proto = sp_pb2.ModelProto()
    proto.ParseFromString(buffer.getvalue())
    # A control piece after the vocabulary: never produced from text, not even from a
    # literal "<CALL>" in a document (a user-defined symbol would be).
    piece = proto.pieces.add()
    piece.piece, piece.score, piece.type = CALL_TOKEN, 0.0, sp_pb2.ModelProto.SentencePiece.CONTROL
    out = Path(out_dir) / MODEL_FILE
    with atomic_path(out) as tmp:
        tmp.write_bytes(proto.SerializeToString())
    return out


class Tokenizer:
    """A trained SentencePiece model with `<CALL>` as its last id."""

    def __init__(self, path: str | Path):
        path = Path(path)
        if path.is_dir():
            path = path / MODEL_FILE
        if not path.exists():
            raise FileNotFoundError(f"{path}: no tokenizer here (materialize the tokenizer asset first)")
        self.path = path
        self.sp = spm.SentencePieceProcessor(model_file=str(path))
        self.vocab_size = self.sp.get_piece_size()
        self.call_id = self.sp.piece_to_id(CALL_TOKEN)
        if self.call_id != self.vocab_size - 1:
            raise ValueError(f"{path}: {CALL_TOKEN} must be the last id, found id {self.call_id} of {self.vocab_size}")
        self.eos_id = self.sp.eos_id()
        self.bos_id = self.sp.bos_id()

    def encode(self, text: str) -> np.ndarray:
        return np.asarray(self.sp.encode(text), dtype=np.int32)

    def encode_with_offsets(self, text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Token ids and the [start, end) character span of each token."""
        enc = self.sp.encode(text, return_type="offset_mapping")
        offsets = np.asarray(enc["offsets"], dtype=np.int32).reshape(-1, 2)
        return np.asarray(enc["ids"], dtype=np.int32), offsets[:, 0], offsets[:, 1]

    def decode(self, ids: Iterable[int]) -> str:
        return self.sp.decode([int(i) for i in ids if int(i) != self.call_id])

    def piece(self, token_id: int) -> str:
        return self.sp.id_to_piece(int(token_id))


def fast_tokenizer(tok: Tokenizer) -> tokenizers.Tokenizer:
    """A `tokenizers` BPE that encodes and decodes every text as the SentencePiece model does.

    SentencePiece here (identity normalization, extra whitespace kept, `add_dummy_prefix`)
    puts one "▁" before any non-empty text, however it starts, and turns every space into
    "▁"; it then merges adjacent pieces, the pair whose merged piece scores highest first
    (the leftmost among equals), within words that start at each "▁", and spells characters
    outside the vocabulary as UTF-8 byte pieces. Hence: the normalizer prepends "▁"
    unconditionally (a Metaspace pre-tokenizer, which transformers' `LlamaTokenizer` builds
    with `legacy` either way, prepends only when the text does not start with a space);
    no pre-tokenizer (no merge crosses a "▁": no piece holds one inside); merges ranked
    by the merged piece's score; byte fallback; and the decoder drops the one leading space
    that the prefix put there. Control pieces (`<unk>`, `<s>`, `</s>`, `<CALL>`) are
    special tokens, never matched in text (see `save_hf_tokenizer`)."""
    proto = sp_pb2.ModelProto()
    proto.ParseFromString(tok.path.read_bytes())
    vocab = {p.piece: i for i, p in enumerate(proto.pieces)}
    normal = {p.piece: (-p.score, i) for i, p in enumerate(proto.pieces) if p.type == sp_pb2.ModelProto.SentencePiece.NORMAL}
    merges = sorted(((piece[:k], piece[k:]) for piece in normal for k in range(1, len(piece))
                     if piece[:k] in normal and piece[k:] in normal),
                    key=lambda pair: (*normal[pair[0] + pair[1]], len(pair[0])))
    fast = tokenizers.Tokenizer(tokenizers.models.BPE(vocab, merges, unk_token=tok.piece(0), fuse_unk=True, byte_fallback=True))
    fast.normalizer = tokenizers.normalizers.Sequence([tokenizers.normalizers.Prepend("▁"), tokenizers.normalizers.Replace(" ", "▁")])
    fast.decoder = tokenizers.decoders.Sequence([
        tokenizers.decoders.Replace("▁", " "), tokenizers.decoders.ByteFallback(), tokenizers.decoders.Fuse(),
        tokenizers.decoders.Strip(" ", 1, 0),
    ])
    controls = [(i, p.piece) for i, p in enumerate(proto.pieces) if p.type in (sp_pb2.ModelProto.SentencePiece.CONTROL,
                                                                               sp_pb2.ModelProto.SentencePiece.UNKNOWN)]
    fast.add_special_tokens([tokenizers.AddedToken(piece, special=True, normalized=False) for _, piece in sorted(controls)])
    return fast


def save_hf_tokenizer(tokenizer_path: str | Path, out_dir: str | Path) -> None:
    """Write a Hugging Face tokenizer folder: `tokenizer.json` (`fast_tokenizer`, loaded by
    `AutoTokenizer` as a `PreTrainedTokenizerFast`) beside the SentencePiece model, `<CALL>`
    a special token at the last id."""
    tok = Tokenizer(tokenizer_path)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MODEL_FILE).write_bytes(tok.path.read_bytes())
    fast_tokenizer(tok).save(str(out_dir / FAST_FILE))
    config = {
        # not LlamaTokenizer: transformers 5 rebuilds that class's normalizer and pre-tokenizer
        # from its own settings, ignoring tokenizer.json's (see `fast_tokenizer`)
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": tok.piece(tok.bos_id),
        "eos_token": tok.piece(tok.eos_id),
        "unk_token": tok.piece(0),
        "pad_token": None,
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "padding_side": "left",  # a causal LM's batched generation (LlamaTokenizer's default)
        "model_max_length": 1 << 30,
        "additional_special_tokens": [CALL_TOKEN],
        # A literal "<CALL>" in text is text, as in SentencePiece: text cannot write a call.
        "split_special_tokens": True,
    }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    special = {"bos_token": config["bos_token"], "eos_token": config["eos_token"], "unk_token": config["unk_token"],
               "additional_special_tokens": [CALL_TOKEN]}
    (out_dir / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")


def tokenizer_summary(tok: Tokenizer, config: TokenizerConfig) -> dict:
    return {**asdict(config), "pieces_with_call": tok.vocab_size, "call_token_id": tok.call_id, "eos_id": tok.eos_id}
