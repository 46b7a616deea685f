"""FactScore machinery on one core, without any LLM: knowledge-source build, BM25 retrieval
(our exact BM25Okapi against bm25s as the baseline, same queries, same run), and the
fact-overlap proxy against bare fact labeling on the same texts.

    PYTHONPATH=. .venv/bin/python bench/factscore.py [--rounds 6]

The proxy is run on the first 600 characters of each person's own article, so its score
there is a sanity check (near 1), not a result.

Each ratio is taken within a round; the last line has their medians over rounds:
retrieval_vs_bm25s=<time ratio> proxy_vs_labeling=<time ratio>
"""

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"  # one core

import argparse  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import bm25s  # noqa: E402
import numpy as np  # noqa: E402
from ratios import describe  # noqa: E402

from evaluation.factscore.entities import build_embedded_knowledge, embedded_people  # noqa: E402
from evaluation.factscore.knowledge import BM25Retrieval, KnowledgeSource, passage_plain_text  # noqa: E402
from evaluation.factscore.proxy import fact_overlap_proxy, fact_spans  # noqa: E402
from pipelines.facts import FactLabeler  # noqa: E402


def bm25s_index(passages: list[dict]) -> bm25s.BM25:
    index = bm25s.BM25(method="robertson", k1=1.5, b=0.75)
    index.index([passage_plain_text(p["text"]).split() for p in passages], show_progress=False)
    return index


def bm25s_top(index: bm25s.BM25, query: str, k: int) -> list[int]:
    tokens = [t for t in query.split() if t in index.vocab_dict]
    scores = index.get_scores(tokens) if tokens else np.zeros(index.scores["num_docs"])
    return list(np.argsort(-scores, kind="stable")[:k])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=6, help="rounds, each timing every variant once")
    args = parser.parse_args()

    people = embedded_people("all")
    labeler = FactLabeler()
    texts = [p["text"].split("\n\n", 1)[-1][:600] for p in people]
    topics = [p["title"] for p in people]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        stats = build_embedded_knowledge(Path(tmp) / "people.db")
        build_s = time.perf_counter() - t0
        print(f"knowledge source: {stats['documents']} articles, {stats['passages']} passages, {build_s:.2f} s")
        knowledge = KnowledgeSource(Path(tmp) / "people.db")
        spans = [fact_spans(t, w) for t, w in zip(texts, labeler.label_texts(texts))]
        queries = [(topic, s) for topic, ss in zip(topics, spans) for s in ss]
        ours_s, base_s, proxy_s, label_s = [], [], [], []
        for r in range(args.rounds):
            t0 = time.perf_counter()
            retrieval = BM25Retrieval(knowledge)  # fresh per-topic indexes each round
            retrieved = [retrieval.get_passages(t, s, 5) for t, s in queries]
            ours_s.append(time.perf_counter() - t0)
            ours = [[knowledge.passages(t).index(p) for p in ps] for (t, _), ps in zip(queries, retrieved)]
            t0 = time.perf_counter()
            indexes: dict[str, bm25s.BM25] = {}
            base = []
            for t, s in queries:
                if t not in indexes:  # one index per topic, as ours
                    indexes[t] = bm25s_index(knowledge.passages(t))
                base.append(bm25s_top(indexes[t], t + " " + s, 5))
            base_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            list(labeler.label_texts(texts))
            label_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            result = fact_overlap_proxy(topics, texts, knowledge, labeler=labeler)
            proxy_s.append(time.perf_counter() - t0)
            print(f"round {r}: retrieval {ours_s[-1]:.2f} s (bm25s {base_s[-1]:.2f} s), "
                  f"labeling {label_s[-1]:.2f} s, proxy {proxy_s[-1]:.2f} s")  # fmt: skip
        knowledge.close()
    same_top = np.mean([o[:1] == [int(b[0])] for o, b in zip(ours, base)])
    print(f"{len(queries)} retrieval queries over {len(topics)} topics: {len(queries) / statistics.median(ours_s):.0f} queries/s; "
          f"top-1 passage equal to bm25s robertson for {same_top:.1%}")  # fmt: skip
    print(f"proxy: {len(texts) / statistics.median(proxy_s):.1f} generations/s, {result['num_facts']} spans; on the articles' "
          f"own text init_score {result['init_score']:.3f}, score {result['score']:.3f} (a sanity check)")  # fmt: skip
    retrieval, proxy = [o / b for o, b in zip(ours_s, base_s)], [p / la for p, la in zip(proxy_s, label_s)]
    print(f"per round, ours / bm25s retrieval time: {describe(retrieval)}; proxy / labeling time: {describe(proxy)}")
    print(f"retrieval_vs_bm25s={statistics.median(retrieval):.3f} proxy_vs_labeling={statistics.median(proxy):.3f}")


if __name__ == "__main__":
    main()
