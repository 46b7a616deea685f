"""Whether Table 5's "15% of tokens are calls in each batch" cap binds the LLM judge: the
share of judge-call tokens per training micro-batch, as the trainer packs them
(`trainer.data.PackedLoader`, the preset's micro-batch: `embedded` 8 x 256).

Without --data, builds the embedded data with the repo's pipeline, without spaCy (the judge
labels need token ids, not fact classes): the embedded corpus, the tokenizer (4,096 pieces,
as the `tokenizer` asset trains it), unlabeled token shards and the A.2.2 judge labels from
LMLM's annotations, in `--work`. With --data and --judge, reads those (e.g. the synthetic
testbed's `token_shards` and `lmlm_judge_labels` with `--preset synthetic`).

    .venv/bin/python bench/judge_fraction.py [--work /tmp/judge_fraction] [--epochs 1]
    .venv/bin/python bench/judge_fraction.py --data artifacts/synthetic/token_shards \
        --judge artifacts/synthetic/lmlm_judge_labels --preset synthetic

The last line is
judge_fraction=<all train tokens> micro_batches=<n> mean=<m> median=<m> p90=<p> max=<m> above_cap=<share>
"""

import argparse
from pathlib import Path

import numpy as np

from pipelines.corpus import CorpusConfig, read_corpus_shard, write_corpus
from pipelines.judge import build_judge_labels
from pipelines.presets import DATA_PRESETS
from pipelines.shards import MANIFEST
from pipelines.token_shards import build_token_shards
from pipelines.tokenizer import TokenizerConfig, train_tokenizer
from trainer.data import PackedLoader, load_documents
from trainer.masks import Needs, num_calls
from trainer.presets import get_preset


def build(work: Path) -> tuple[Path, Path]:
    """The token shards and judge labels of the embedded corpus (reused when present)."""
    corpus, tokenizer, tokens, judge = (work / d for d in ("corpus", "tokenizer", "token_shards", "judge"))
    shards = DATA_PRESETS["embedded"].num_shards
    if not (corpus / MANIFEST).exists():
        write_corpus(CorpusConfig(), corpus, shards)
    if not (tokenizer / "tokenizer.model").exists():
        parts = [read_corpus_shard(corpus, k, ["text", "split"]).to_pydict() for k in range(shards)]
        texts = [t for p in parts for t, s in zip(p["text"], p["split"]) if s == "train"]  # as the `tokenizer` asset
        train_tokenizer(texts, tokenizer, TokenizerConfig(vocab_size=DATA_PRESETS["embedded"].vocab_size))
    if not (tokens / MANIFEST).exists():
        build_token_shards(corpus, None, tokenizer / "tokenizer.model", tokens, log=lambda _m: None)
    if not (judge / MANIFEST).exists():
        build_judge_labels(corpus, tokens, judge, log=lambda _m: None)
    return tokens, judge


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/judge_fraction"))
    parser.add_argument("--epochs", type=int, default=1, help="micro-batches covering this many epochs of the train split")
    parser.add_argument("--data", type=Path, default=None, help="a token dataset (default: build the embedded one in --work)")
    parser.add_argument("--judge", type=Path, default=None, help="its judge labels (with --data)")
    parser.add_argument("--preset", default="embedded", help="the trainer preset whose micro-batch is measured")
    args = parser.parse_args()
    tokens, judge = (args.data, args.judge) if args.data else build(args.work)
    docs = load_documents([tokens], "train", judge_dirs=[judge], needs=Needs(judge=True), method="llm_judge",
                          cache_dir=args.work / "cache")
    run = get_preset(args.preset).run("llm_judge")
    loader = PackedLoader(docs, run.context, run.micro_batch_size, run.micro_batches_per_step(), seed=0)
    n = run.micro_batch_size * run.context
    steps = -(-args.epochs * loader.epoch_len // loader.tokens_per_step)
    fractions = np.array([float(b.labels.judge_call.float().mean()) for s in range(steps)
                          for b in (loader.micro_batch(s, k) for k in range(loader.g))])
    cap = num_calls(n) / n
    print(f"{docs.num_docs} train documents, {int(docs.offsets[-1])} tokens; {len(fractions)} micro-batches of {n} targets; "
          f"cap round(0.15 n)/n = {cap:.4f}")
    print(f"judge_fraction={float(np.mean(docs.judge_call)):.4f} micro_batches={len(fractions)} mean={fractions.mean():.4f} "
          f"median={np.median(fractions):.4f} p90={np.quantile(fractions, 0.9):.4f} max={fractions.max():.4f} "
          f"above_cap={float(np.mean(fractions > cap)):.4f}")


if __name__ == "__main__":
    main()
