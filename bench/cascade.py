"""Cascade throughput (A.5) with the transformers partner: batched decoding (one forward per
step for all unfinished sequences, and one per step for the partner's queries) against one
sequence per forward (both with their KV caches), measured in the same rounds.

    PYTHONPATH=. python bench/cascade.py                        # testbed-shaped stand-ins
    PYTHONPATH=. python bench/cascade.py --shape embedded --prompts 8 --max-new-tokens 128
    PYTHONPATH=. python bench/cascade.py --model CKPT --partner DIR --prompts 8
    PYTHONPATH=. python bench/cascade.py --profile               # where a batched run's time goes

Without --model/--partner, random GPT-2s in the checkpoint layout are written to a temporary
folder: their text means nothing, but their cost per token is that of real models of the
same size. `--shape testbed` (default): a tokenizer of 2,048 pieces trained on the synthetic
world, the testbed's 0.7M-parameter small model (d=128, 2 layers, context 128) and a 2.2M
partner (d=192, 4 layers, context 256), prompted "{name}\\n\\n{name}" for people of the world,
50 prompts and 96 new tokens as in `make synthetic`. `--shape embedded`: a tokenizer of 4,096
pieces on the embedded Wikipedia leads, small d=256 x 4 layers, partner d=512 x 8 layers,
prompts "Tell me a bio of {name}. {name} is"; `--rag-chars N` puts the first N characters of
the person's lead before every partner query, as the RAG prompt of A.5 does.

Each round runs both variants (order alternating) and takes their ratio of tokens per second;
the last line is the median over rounds with quartiles (`bench/ratios.py`). The token ids of
the two variants are compared in every round, and once with the reference (`reuse_cache=False`:
each sequence read whole and alone, small model and partner); the lines say whether they were
identical.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import lzma
import pstats
import tempfile
import time
from pathlib import Path

import torch

from bench.ratios import describe
from evaluation.backends.transformers_backend import TransformersBackend
from evaluation.cascade.generate import CascadeConfig, generate, rag_prefix, summarize
from evaluation.checkpoint import load_checkpoint, write_random_checkpoint
from pipelines.biographies import SyntheticConfig, generate_world
from pipelines.corpus import LEADS_FILE
from pipelines.tokenizer import TokenizerConfig, train_tokenizer

SHAPES = {  # tokenizer pieces, small model, partner (write_random_checkpoint arguments)
    "testbed": (2048, dict(n_embd=128, n_layer=2, n_head=4, n_positions=128),
                dict(n_embd=192, n_layer=4, n_head=4, n_positions=256)),
    "embedded": (4096, dict(n_embd=256, n_layer=4, n_head=4, n_positions=1024),
                 dict(n_embd=512, n_layer=8, n_head=8, n_positions=2048)),
}


def people(shape: str, n: int) -> list[tuple[str, str]]:
    """(name, text about them) for n people: the synthetic world's, or the embedded leads'."""
    if shape == "testbed":
        world = generate_world(SyntheticConfig())
        first = {}
        for doc in world.documents:
            first.setdefault(doc.title, doc.text)
        return list(first.items())[:n]
    leads = json.loads(lzma.open(LEADS_FILE).read())
    return [(v["title"], v["extract"]) for v in leads.values() if v.get("topic") == "People"][:n]


def stand_ins(shape: str, tmp: Path) -> tuple[Path, Path]:
    vocab, small, partner = SHAPES[shape]
    texts = [text for _, text in people(shape, 3000)]
    tok = train_tokenizer(texts, tmp, TokenizerConfig(vocab_size=vocab))
    return (write_random_checkpoint(tmp / "small", tok, seed=0, **small),
            write_random_checkpoint(tmp / "partner", tok, seed=1, method="reference", **partner))


PARTS = (  # (label, function, calling function or None): cumulative seconds under cProfile
    ("cascade (generate)", "generate", None),
    ("  small model forwards", "logits", "generate"),
    ("  small model repetition penalty", "penalize_rows", "generate"),
    ("  call decisions (CallBudget)", "_call_decisions", "generate"),
    ("  partner queries' text (decode)", "decode", "<listcomp>"),
    ("  partner (top_tokens)", "top_tokens", None),
    ("    partner tokenization", "input_ids", None),
    ("    partner forwards", "logits", "top_tokens"),
    ("    partner repetition penalty + top 2", "rank_candidates", None),
    ("    candidate texts", "continuation_text", None),
    ("  partner tokens to ours", "to_ours", None),
    ("  generations' texts (_finish)", "_finish", None),
)


def breakdown(stats: pstats.Stats) -> list[tuple[str, float]]:
    """Cumulative seconds of `PARTS` (summed over functions of that name in our code)."""
    rows = []
    for label, name, caller in PARTS:
        seconds = 0.0
        for (path, _, func), (_, _, _, cumulative, callers) in stats.stats.items():
            if func != name or "site-packages" in path:
                continue
            if caller is None:
                seconds += cumulative
            else:
                seconds += sum(c[3] for (_, _, f), c in callers.items() if f == caller)
        rows.append((label, seconds))
    return rows


def run(model: Path, partner_dir: Path, prompts: list[str], prefixes: list[str], config: CascadeConfig) -> tuple[float, list]:
    small = load_checkpoint(model)
    partner = TransformersBackend(partner_dir, dtype="float32", max_batch=config.max_batch, reuse_cache=config.reuse_cache)
    generate(small, prompts[:2], partner, CascadeConfig(max_new_tokens=4, max_batch=config.max_batch))  # warm-up
    t0 = time.perf_counter()
    gens = generate(small, prompts, partner, config, partner_prefixes=prefixes)
    return time.perf_counter() - t0, gens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="testbed")
    parser.add_argument("--model", type=Path)
    parser.add_argument("--partner", type=Path)
    parser.add_argument("--prompts", type=int, default=50)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--call-budget", type=float, default=0.22)
    parser.add_argument("--rag-chars", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--profile", action="store_true", help="profile one batched run instead (cProfile)")
    args = parser.parse_args()
    torch.set_flush_denormal(True)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        model, partner = (args.model, args.partner) if args.model else stand_ins(args.shape, Path(tmp))
        entities = people(args.shape, args.prompts)
        template = "{name}\n\n{name}" if args.shape == "testbed" else "Tell me a bio of {name}. {name} is"
        prompts = [template.format(name=name) for name, _ in entities]
        prefixes = [rag_prefix(name, text[: args.rag_chars]) if args.rag_chars else "" for name, text in entities]
        variants = {"batched": 0, "unbatched": 1}  # CascadeConfig.max_batch (and the partner's)
        print(f"{len(prompts)} prompts, max {args.max_new_tokens} new tokens, call budget {args.call_budget}, "
              f"RAG prefix chars {args.rag_chars}, torch threads {torch.get_num_threads()}")
        if args.profile:
            config = CascadeConfig(max_new_tokens=args.max_new_tokens, call_budget=args.call_budget)
            profiler = cProfile.Profile()
            seconds, gens = profiler.runcall(run, model, partner, prompts, prefixes, config)
            stats = pstats.Stats(profiler)
            print(f"batched run: {seconds:.2f} s under cProfile, {sum(len(g.token_ids) for g in gens)} tokens, "
                  f"{summarize(gens)['calls']} calls")
            total = dict(breakdown(stats))["cascade (generate)"]
            for label, part in breakdown(stats):
                print(f"{label:<40} {part:7.2f} s {100 * part / total:5.1f}%")
            stats.sort_stats("tottime").print_stats(15)
            return
        ratios = []
        for r in range(args.rounds):
            order = list(variants) if r % 2 == 0 else list(reversed(variants))
            results = {}
            for label in order:
                config = CascadeConfig(max_new_tokens=args.max_new_tokens, call_budget=args.call_budget,
                                       max_batch=variants[label])
                seconds, gens = run(model, partner, prompts, prefixes, config)
                tokens = sum(len(g.token_ids) for g in gens)
                results[label] = (tokens / seconds, gens)
                s = summarize(gens)
                print(f"round {r + 1} {label:>9}: {tokens / seconds:8.1f} tokens/s ({seconds:.2f} s, {tokens} tokens, "
                      f"call rate {s['call_rate']:.3f}, partner tokens read per call {s['mean_partner_tokens_per_call']:.1f})")
            same = all(a.token_ids == b.token_ids for a, b in zip(results["batched"][1], results["unbatched"][1]))
            ratios.append(results["batched"][0] / results["unbatched"][0])
            print(f"round {r + 1}: batched / unbatched tokens/s {ratios[-1]:.3f}, same token ids: {same}")
        reference_config = CascadeConfig(max_new_tokens=args.max_new_tokens, call_budget=args.call_budget, reuse_cache=False)
        seconds, reference = run(model, partner, prompts, prefixes, reference_config)
        same = all(a.token_ids == b.token_ids for a, b in zip(results["batched"][1], reference))
        print(f"reference (each sequence re-read whole and alone): {sum(len(g.token_ids) for g in reference) / seconds:.1f} "
              f"tokens/s ({seconds:.2f} s); batched token ids identical to it: {same}")
    print(f"batched_vs_unbatched_tokens_per_s={describe(ratios) if len(ratios) > 1 else f'{ratios[0]:.3f}'}")


if __name__ == "__main__":
    main()
