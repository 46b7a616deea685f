"""Cascade throughput (A.5) with the transformers partner: KV-cache reuse against re-reading
the whole prefix, for the partner and for the small model, measured in one run.

    PYTHONPATH=. python bench/cascade.py                      # random stand-in models
    PYTHONPATH=. python bench/cascade.py --model CKPT --partner HF_DIR --prompts 8

Without --model/--partner, random GPT-2s in the checkpoint layout are written to a
temporary folder (a tokenizer trained on the embedded Wikipedia leads; small: 4 layers,
d=256; partner: 8 layers, d=512): their text means nothing, but their cost per token is
that of real models of the same size. `--rag-chars N` puts the first N characters of the
prompt's article-sized filler before every partner query, as the RAG prompt of A.5 does.
Output equality between the cached and uncached runs is checked and printed.
"""

from __future__ import annotations

import argparse
import json
import lzma
import tempfile
import time
from pathlib import Path

import torch

from evaluation.backends.transformers_backend import TransformersBackend
from evaluation.cascade.generate import CascadeConfig, generate, rag_prefix, summarize
from evaluation.checkpoint import load_checkpoint, write_random_checkpoint
from pipelines.corpus import LEADS_FILE
from pipelines.tokenizer import TokenizerConfig, train_tokenizer


def people(n: int) -> list[tuple[str, str]]:
    leads = json.loads(lzma.open(LEADS_FILE).read())
    rows = [(v["title"], v["extract"]) for v in leads.values() if v.get("topic") == "People"]
    return rows[:n]


def stand_ins(tmp: Path) -> tuple[Path, Path]:
    leads = json.loads(lzma.open(LEADS_FILE).read())
    tok = train_tokenizer([v["extract"] for v in list(leads.values())[:3000]], tmp, TokenizerConfig(vocab_size=4096))
    small = write_random_checkpoint(tmp / "small", tok, n_embd=256, n_layer=4, n_head=4, n_positions=1024, seed=0)
    partner = write_random_checkpoint(tmp / "partner", tok, n_embd=512, n_layer=8, n_head=8, n_positions=2048,
                                      seed=1, method="reference")
    return small, partner


def run(model: Path, partner_dir: Path, prompts: list[str], prefixes: list[str], config: CascadeConfig,
        partner_cache: bool) -> tuple[float, list]:
    small = load_checkpoint(model)
    partner = TransformersBackend(partner_dir, reuse_cache=partner_cache)
    generate(small, prompts[:1], partner, CascadeConfig(max_new_tokens=4))  # warm-up
    t0 = time.perf_counter()
    gens = generate(small, prompts, partner, config, partner_prefixes=prefixes)
    return time.perf_counter() - t0, gens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--partner", type=Path)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--call-budget", type=float, default=0.22)
    parser.add_argument("--rag-chars", type=int, default=0)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    torch.set_flush_denormal(True)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        model, partner = (args.model, args.partner) if args.model else stand_ins(Path(tmp))
        entities = people(args.prompts)
        prompts = [f"Tell me a bio of {name}. {name} is" for name, _ in entities]
        prefixes = [rag_prefix(name, text[: args.rag_chars]) if args.rag_chars else "" for name, text in entities]
        settings = {"both cached": (True, True), "partner re-reads": (True, False), "neither cached": (False, False)}
        results = {}
        for label, (small_cache, partner_cache) in settings.items():
            config = CascadeConfig(max_new_tokens=args.max_new_tokens, call_budget=args.call_budget,
                                   reuse_cache=small_cache)
            seconds, gens = run(model, partner, prompts, prefixes, config, partner_cache)
            results[label] = (seconds, gens)
    base_seconds, base = results["neither cached"]
    print(f"{len(prompts)} prompts, max {args.max_new_tokens} new tokens, call budget {args.call_budget}, "
          f"RAG prefix chars {args.rag_chars}, torch threads {torch.get_num_threads()}")
    for label, (seconds, gens) in results.items():
        s = summarize(gens)
        tokens = sum(len(g.token_ids) for g in gens)
        same = all(a.token_ids == b.token_ids and a.from_partner == b.from_partner for a, b in zip(gens, base))
        print(f"{label:>16}: {tokens / seconds:8.1f} tokens/s  ({seconds:.2f} s, {tokens} tokens, "
              f"call rate {s['call_rate']:.3f}, {s['calls']} calls, partner tokens read per call "
              f"{s['mean_partner_tokens_per_call']:.1f})  speed-up x{base_seconds / seconds:.2f}  "
              f"same output as uncached: {same}")


if __name__ == "__main__":
    main()
