"""The GPT-2 decoder of A.3, in one file (nanoGPT is the model for this one).

Learned positions, pre-LayerNorm blocks, GELU (tanh approximation), MLP of 4 d, biases
everywhere and the output head tied to the token embedding: the architecture and the
parameter names of Hugging Face's `GPT2LMHeadModel`, so a checkpoint exports exactly
(`hf_state_dict`, `hf_config`). The only layout difference: HF keeps its projections as
`Conv1D` ([in, out] weights) where we use `nn.Linear` ([out, in]); export transposes them.

Precision (A.3): on GPU the train loop runs the model under bf16 autocast with fp32 master
weights. CUDA autocast computes `layer_norm` in fp32, and `scaled_dot_product_attention`
(flash / memory-efficient kernels) keeps the softmax statistics in fp32 while its inputs
are bf16, which is the paper's "normalization and attention softmax in fp32". On CPU
everything is fp32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

# Hugging Face `Conv1D` weights are stored [in, out]; these Linear weights are transposed on export.
_CONV1D_SUFFIXES = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int  # SentencePiece pieces + 1 for <CALL> (the last id)
    context: int = 1024
    d_model: int = 1024
    n_heads: int = 16
    n_layers: int = 24
    layer_norm_eps: float = 1e-5  # GPT-2's


# Named sizes (Table 3). `tiny` is the embedded default, chosen by measurement so that the
# embedded LaCy run trains in about 5 minutes on 2 CPU cores (see trainer/presets.py).
SIZES: dict[str, dict] = {
    "smoke": dict(d_model=32, n_heads=2, n_layers=2, context=32),  # tests and quick CLI checks
    "mini": dict(d_model=128, n_heads=4, n_layers=2, context=128),  # the synthetic testbed's small models on a shared CPU
    "mini4": dict(d_model=128, n_heads=4, n_layers=4, context=128),  # the synthetic testbed's partner: twice the layers
    "tiny": dict(d_model=256, n_heads=4, n_layers=4, context=256),
    "334m": dict(d_model=1024, n_heads=16, n_layers=24, context=1024),
    "1.3b": dict(d_model=2048, n_heads=16, n_layers=24, context=1024),
}


def model_config(size: str, vocab_size: int, **overrides) -> GPTConfig:
    if size not in SIZES:
        raise ValueError(f"unknown model size {size!r}; choose one of {sorted(SIZES)}")
    return replace(GPTConfig(vocab_size=vocab_size, **SIZES[size]), **overrides)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.c_attn = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.c_proj = nn.Linear(cfg.d_model, cfg.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        q, k, v = self.c_attn(x).split(D, dim=2)
        q, k, v = (t.view(B, T, self.n_heads, D // self.n_heads).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # scale 1/sqrt(head_dim), as GPT-2
        return self.c_proj(y.transpose(1, 2).reshape(B, T, D))


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(cfg.d_model, 4 * cfg.d_model)
        self.c_proj = nn.Linear(4 * cfg.d_model, cfg.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(cfg.vocab_size, cfg.d_model),
                wpe=nn.Embedding(cfg.context, cfg.d_model),
                h=nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers)),
                ln_f=nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps),
            )
        )
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # tied, as GPT-2
        self.apply(self._init_weights)
        # GPT-2's scaled init of the residual projections (nanoGPT does the same).
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layers))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())  # tied head counted once, embeddings included (Table 3)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Token ids (B, T) -> logits (B, T, vocab_size)."""
        T = idx.shape[1]
        if T > self.cfg.context:
            raise ValueError(f"sequence of {T} tokens is longer than the context ({self.cfg.context})")
        pos = torch.arange(T, device=idx.device)
        x = self.transformer.wte(idx) + self.transformer.wpe(pos)
        for block in self.transformer.h:
            x = block(x)
        return self.lm_head(self.transformer.ln_f(x))

    # ------------------------------------------------------------------ HF export / import

    def hf_state_dict(self) -> dict[str, torch.Tensor]:
        """Parameters under `GPT2LMHeadModel`'s names and layout (the tied head omitted, as
        `save_pretrained` does), fp32 and contiguous, ready for safetensors."""
        out = {}
        for name, t in self.state_dict().items():
            if name == "lm_head.weight":
                continue
            t = t.detach().float()
            out[name] = (t.t() if name.endswith(_CONV1D_SUFFIXES) else t).contiguous()
        return out

    def load_hf_state_dict(self, tensors: dict[str, torch.Tensor]) -> None:
        expected = set(self.hf_state_dict())
        missing, unexpected = expected - set(tensors), set(tensors) - expected - {"lm_head.weight"}
        if missing or unexpected:
            raise ValueError(f"checkpoint does not match the model: missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}")
        own = {n: (t.t() if n.endswith(_CONV1D_SUFFIXES) else t) for n, t in tensors.items() if n != "lm_head.weight"}
        own["lm_head.weight"] = own["transformer.wte.weight"]
        self.load_state_dict(own)


def hf_config(cfg: GPTConfig, bos_id: int, eos_id: int) -> dict:
    """`config.json` of the equivalent `GPT2LMHeadModel` (written by hand: importing
    transformers costs seconds per run; the export test loads it with AutoModelForCausalLM)."""
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": cfg.vocab_size,
        "n_positions": cfg.context,
        "n_embd": cfg.d_model,
        "n_layer": cfg.n_layers,
        "n_head": cfg.n_heads,
        "n_inner": None,  # 4 * n_embd
        "activation_function": "gelu_pytorch_tanh",  # F.gelu(approximate="tanh"), as here
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attn_pdrop": 0.0,
        "layer_norm_epsilon": cfg.layer_norm_eps,
        "initializer_range": 0.02,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "bos_token_id": bos_id,
        "eos_token_id": eos_id,
        "tie_word_embeddings": True,
        "use_cache": True,
        "dtype": "float32",
    }


def config_from_hf(config: dict) -> GPTConfig:
    return GPTConfig(
        vocab_size=config["vocab_size"],
        context=config["n_positions"],
        d_model=config["n_embd"],
        n_heads=config["n_head"],
        n_layers=config["n_layer"],
        layer_norm_eps=config["layer_norm_epsilon"],
    )
