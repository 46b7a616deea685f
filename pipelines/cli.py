"""`lacy label`: the A.2.1 fact labels of a text or a JSONL file, with the same code as the
`spacy_word_labels` and `token_shards` assets.

    lacy label "Marie Curie discovered radium in 1898."
    lacy label --tokens artifacts/tokenizer "Marie Curie discovered radium in 1898."
    lacy label --jsonl docs.jsonl --stats
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter

from pipelines.align import token_classes
from pipelines.classes import CLASS_NAMES
from pipelines.corpus import read_source
from pipelines.facts import DEFAULT_SPACY_MODEL, ORG_KEYWORDS, PAPER_ORG_KEYWORDS, FactLabeler, LabelerConfig
from pipelines.files import exit_status
from pipelines.tokenizer import Tokenizer


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("label", help="label words (and tokens) as fact / grammatical / other (A.2.1)")
    p.add_argument("text", nargs="?", help="text to label (or use --jsonl)")
    p.add_argument("--jsonl", help='a file of {"text": ...} objects, one per line')
    p.add_argument("--tokens", metavar="TOKENIZER", help="a tokenizer.model (or its folder): print per-token labels")
    p.add_argument("--stats", action="store_true", help="print only the fractions of each class (words, and tokens with --tokens)")
    p.add_argument("--spacy-model", default=DEFAULT_SPACY_MODEL, help="an installed spaCy pipeline (default: %(default)s)")
    p.add_argument("--org-keywords", type=lambda s: tuple(s.split(",")), default=ORG_KEYWORDS,
                   help="comma-separated ORG keywords (default: a list of 27; the paper names "
                   + ",".join(PAPER_ORG_KEYWORDS) + ")")
    p.add_argument("--no-org-the", dest="org_leading_the", action="store_false",
                   help='do not take a leading "the" as an ORG cue (A.2.1 does)')
    return p


def run(args: argparse.Namespace) -> int:
    if (args.text is None) == (args.jsonl is None):
        print("lacy label: give a text or --jsonl FILE (not both)", file=sys.stderr)
        return 2
    texts = [r.text for r in read_source(args.jsonl)] if args.jsonl else [args.text]
    labeler = FactLabeler(LabelerConfig(spacy_model=args.spacy_model, org_keywords=args.org_keywords,
                                        org_leading_the=args.org_leading_the))
    tok = Tokenizer(args.tokens) if args.tokens else None
    counts = {"words": Counter(), "tokens": Counter()}
    out = sys.stdout
    for doc, (text, words) in enumerate(zip(texts, labeler.label_texts(texts))):
        counts["words"].update(CLASS_NAMES[c] for c in words.cls.tolist())
        if tok is None:
            rows = list(words.records(text))
        else:
            ids, starts, ends = tok.encode_with_offsets(text)
            cls = token_classes(len(text), words, starts, ends)
            counts["tokens"].update(CLASS_NAMES[c] for c in cls.tolist())
            rows = [
                {"id": int(i), "piece": tok.piece(i), "start": int(s), "end": int(e), "label": CLASS_NAMES[c]}
                for i, s, e, c in zip(ids.tolist(), starts.tolist(), ends.tolist(), cls.tolist())
            ]
        if not args.stats:
            for row in rows:
                out.write(json.dumps({"doc": doc, **row} if args.jsonl else row, ensure_ascii=False) + "\n")
    if args.stats:
        out.write(json.dumps(summary(counts, len(texts)), indent=2) + "\n")
    return 0


def summary(counts: dict[str, Counter], docs: int) -> dict:
    result: dict = {"documents": docs}
    for unit, c in counts.items():
        total = sum(c.values())
        if total:
            result[unit] = total
            result[f"{unit[:-1]}_fractions"] = {name: round(c[name] / total, 4) for name in CLASS_NAMES}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lacy")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return exit_status(f"lacy {args.command}", lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
