"""Why the embedded sample's fact fraction is above the paper's 25%: the token fact fraction
of the embedded dwiki articles under the A.2.1 rules with each ORG cue on or off, overall and
by document length, one spaCy parse shared by all variants.

    .venv/bin/python bench/fact_fraction.py [--tokenizer artifacts/tokenizer] [--docs N]

Prints one table row per variant; the last line is
default=<fraction> no_leading_the=<fraction> paper_keywords=<fraction> paper_keywords_no_the=<fraction>
"""

import argparse

import numpy as np

from pipelines.align import token_classes
from pipelines.classes import FACT
from pipelines.corpus import CorpusConfig, build_corpus
from pipelines.facts import PAPER_ORG_KEYWORDS, FactLabeler, LabelerConfig, MentionTracker
from pipelines.token_shards import LENGTH_BUCKETS, length_bucket
from pipelines.tokenizer import Tokenizer

VARIANTS = {
    "default": LabelerConfig(),
    "no_leading_the": LabelerConfig(org_leading_the=False),
    "paper_keywords": LabelerConfig(org_keywords=PAPER_ORG_KEYWORDS),
    "paper_keywords_no_the": LabelerConfig(org_keywords=PAPER_ORG_KEYWORDS, org_leading_the=False),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", default="artifacts/tokenizer", help="the tokenizer.model (or its folder) of the shards")
    parser.add_argument("--docs", type=int, default=None, help="only the first N documents")
    args = parser.parse_args()

    texts = build_corpus(CorpusConfig())[0].column("text").to_pylist()[: args.docs]
    tok = Tokenizer(args.tokenizer)
    base = FactLabeler(VARIANTS["default"])
    labelers = {name: base if name == "default" else FactLabeler(config, nlp=base.nlp) for name, config in VARIANTS.items()}
    counts = {name: {b: [0, 0] for b in ["all", *LENGTH_BUCKETS]} for name in VARIANTS}  # [fact tokens, tokens]
    for text, doc in zip(texts, base.nlp.pipe(texts, batch_size=64)):
        _, starts, ends = tok.encode_with_offsets(text)
        for name, labeler in labelers.items():
            cls = token_classes(len(text), labeler.label_doc(doc, MentionTracker(), 0), starts, ends)
            facts = int(np.sum(cls == FACT))
            for bucket in ("all", length_bucket(len(cls))):
                counts[name][bucket][0] += facts
                counts[name][bucket][1] += len(cls)
    print("| variant | all | " + " | ".join(f"{b} tokens" for b in LENGTH_BUCKETS) + " |")
    print("|---" * (len(LENGTH_BUCKETS) + 2) + "|")
    for name, c in counts.items():
        print(f"| {name} | " + " | ".join(f"{f / max(n, 1):.3f}" for f, n in c.values()) + " |")
    print(" ".join(f"{name}={c['all'][0] / max(c['all'][1], 1):.4f}" for name, c in counts.items()))


if __name__ == "__main__":
    main()
