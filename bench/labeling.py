"""Labeling throughput on one core: the whole data stage (spaCy + A.2.1 rules +
SentencePiece + token alignment + Parquet) against bare `nlp.pipe` with the same
components on the same text, measured in the same run.

    .venv/bin/python bench/labeling.py [--rounds 2] [--vocab-size 32000]

Last line: labeling_vs_bare_spacy=<throughput ratio, the median over rounds of each round's
bare / full time> tokens_per_s_per_core=<n, at the median full time> (the paper: 152 h per
1B tokens on one core, about 1,830 tokens/s).
"""

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"  # one core

import argparse  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from ratios import describe  # noqa: E402

from pipelines.corpus import CorpusConfig, build_corpus, write_corpus  # noqa: E402
from pipelines.facts import FactLabeler  # noqa: E402
from pipelines.files import write_json  # noqa: E402
from pipelines.token_shards import build_token_shards  # noqa: E402
from pipelines.tokenizer import TokenizerConfig, train_tokenizer  # noqa: E402
from pipelines.word_labels import label_shard  # noqa: E402

PAPER_TOKENS_PER_S = 1e9 / (152 * 3600)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2, help="rounds, each timing both once")
    parser.add_argument("--vocab-size", type=int, default=32_000, help="the paper's tokenizer size by default")
    parser.add_argument("--out", default="artifacts/bench/labeling.json", help="where the numbers go (comparison_report's Table 2 reads them)")
    args = parser.parse_args()

    texts = build_corpus(CorpusConfig())[0].column("text").to_pylist()
    labeler = FactLabeler()
    print(f"{len(texts)} documents, {sum(map(len, texts))} characters; spaCy components: {labeler.nlp.pipe_names}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_corpus(CorpusConfig(), tmp / "corpus", 1)
        tokenizer = train_tokenizer(texts, tmp / "tokenizer", TokenizerConfig(vocab_size=args.vocab_size))
        bare, full = [], []
        for r in range(args.rounds):
            t0 = time.perf_counter()
            words = sum(len(doc) for doc in labeler.nlp.pipe(texts, batch_size=labeler.config.batch_size))
            bare.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            label_shard(tmp / "corpus", 0, tmp / "labels", labeler, log=lambda _m: None)
            manifest = build_token_shards(tmp / "corpus", tmp / "labels", tokenizer, tmp / "tokens", log=lambda _m: None)
            full.append(time.perf_counter() - t0)
            print(f"round {r}: bare nlp.pipe {bare[-1]:.2f} s, full labeling {full[-1]:.2f} s")
    tokens = manifest["tokens"]
    ratios = [b / f for b, f in zip(bare, full)]
    ratio, rate = statistics.median(ratios), tokens / statistics.median(full)
    print(f"per round, bare / full time: {describe(ratios)}")
    print(f"spaCy tokens {words}, SentencePiece tokens {tokens} (vocab {args.vocab_size}+1), fact fraction {manifest['fact_fraction']:.3f}")
    print(f"paper: {PAPER_TOKENS_PER_S:.0f} tokens/s per core; ours is {rate / PAPER_TOKENS_PER_S:.2f}x")
    write_json(args.out, {"labeling_vs_bare_spacy": ratio, "tokens_per_s_per_core": rate, "bare_seconds": statistics.median(bare),
                          "labeling_seconds": statistics.median(full), "tokens": tokens, "vocab_size": args.vocab_size,
                          "paper_tokens_per_s_per_core": PAPER_TOKENS_PER_S})
    print(f"labeling_vs_bare_spacy={ratio:.3f} tokens_per_s_per_core={rate:.0f}")


if __name__ == "__main__":
    main()
