"""FActScore's human labels (Min et al. 2023): 183 people, biographies by ChatGPT,
InstructGPT and PerplexityAI split into sentences and human atomic facts labelled
S (supported), NS (not supported) or IR (irrelevant). We use them for two things:

- `human_factscores`: the human FactScore per source, with the same gamma and abstention
  rules as ours (no judge needed);
- `validate_judge`: our support judge run on the same human atomic facts against a
  knowledge source, and its FactScore compared with the human one per source (FActScore's
  "error rate" check of its estimators).

How IR counts. `irrelevant="exclude"` keeps only S and NS facts (a generation's score is
S / (S + NS)). `irrelevant="not_supported"` counts IR facts, and the model-generated facts
of sentences the annotators marked irrelevant (which got no human facts), as not
supported; this reproduces the human FactScores of the FActScore paper (InstructGPT 42.5,
ChatGPT 58.3, PerplexityAI 71.5) to within 0.1. A response with `annotations: null`
abstained; one without any counted fact counts as abstained too, as in FActScore.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

from evaluation.backends.text import TextLLM
from evaluation.factscore.knowledge import FACTSCORE_DATA_DIR, BM25Retrieval, KnowledgeSource
from evaluation.factscore.metric import GAMMA, FactScoreConfig, aggregate, judge_support
from pipelines.files import fingerprint, iter_jsonl

LABELED_DIR = FACTSCORE_DATA_DIR / "labeled"
SOURCES = ("ChatGPT", "InstructGPT", "PerplexityAI")
PAPER_HUMAN_FACTSCORE = {"InstructGPT": 42.5, "ChatGPT": 58.3, "PerplexityAI": 71.5}  # FActScore paper, Table 1
IRRELEVANT_RULES = ("exclude", "not_supported")


def labeled_path(source: str, labeled_dir: str | Path | None = None) -> Path:
    directory = Path(labeled_dir) if labeled_dir is not None else LABELED_DIR
    for name in (f"{source}.jsonl", f"{source}.jsonl.xz"):
        if (directory / name).is_file():
            return directory / name
    raise FileNotFoundError(f"{directory}: no {source}.jsonl or {source}.jsonl.xz (FActScore's labeled data)")


def read_labeled(source: str, labeled_dir: str | Path | None = None) -> list[dict]:
    """The records of `<source>.jsonl[.xz]`: input, output, topic, cat, annotations."""
    path = labeled_path(source, labeled_dir)
    records = []
    for lineno, record in iter_jsonl(path):
        missing = {"topic", "output", "annotations"} - set(record)
        if missing:
            raise ValueError(f"{path}:line {lineno}: missing fields {sorted(missing)}")
        records.append(record)
    return records


def labeled_facts(record: dict, irrelevant: str = "exclude") -> list[tuple[str, bool]] | None:
    """(atomic fact, human says supported) of one labeled response, None if it abstained."""
    if irrelevant not in IRRELEVANT_RULES:
        raise ValueError(f"irrelevant must be one of {IRRELEVANT_RULES}, got {irrelevant!r}")
    if record["annotations"] is None:
        return None
    facts = []
    for sentence in record["annotations"]:
        if sentence.get("is-relevant", True):
            for fact in sentence.get("human-atomic-facts") or []:
                if fact["label"] in ("S", "NS") or irrelevant == "not_supported":
                    facts.append((fact["text"], fact["label"] == "S"))
        elif irrelevant == "not_supported":
            facts += [(fact["text"], False) for fact in sentence.get("model-atomic-facts") or []]
    return facts


def label_counts(records: Sequence[dict]) -> dict[str, int]:
    counts = Counter(
        fact["label"]
        for r in records
        for s in r["annotations"] or []
        for fact in s.get("human-atomic-facts") or []
    )
    return {label: counts.get(label, 0) for label in ("S", "NS", "IR")}


def _summary(result: dict) -> dict:
    return {k: v for k, v in result.items() if k != "per_generation"}


def human_factscores(
    labeled_dir: str | Path | None = None,
    sources: Sequence[str] = SOURCES,
    gamma: int = GAMMA,
    irrelevant: str = "exclude",
) -> dict[str, dict]:
    """Per source: `aggregate`'s keys (score, init_score = without length penalty,
    respond_ratio, abstention_ratio, counts) computed from the human labels, the S/NS/IR
    counts as `labels`, and the FActScore paper's figure as `paper_score`."""
    out = {}
    for source in sources:
        records = read_labeled(source, labeled_dir)
        facts = [labeled_facts(r, irrelevant) for r in records]
        result = _summary(aggregate([None if f is None else [s for _, s in f] for f in facts], gamma))
        out[source] = {**result, "labels": label_counts(records), "irrelevant": irrelevant,
                       "paper_score": PAPER_HUMAN_FACTSCORE.get(source)}  # fmt: skip
    return out


def validate_judge(
    judge: TextLLM,
    knowledge: KnowledgeSource,
    labeled_dir: str | Path | None = None,
    sources: Sequence[str] = SOURCES,
    config: FactScoreConfig = FactScoreConfig(),
    irrelevant: str = "exclude",
    limit: int | None = None,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Run our support judge on the human atomic facts and compare FactScores per source.

    Responses whose topic is not in `knowledge` are skipped and counted
    (`num_missing_knowledge`); `limit` keeps the first n records per source. Per source:
    `factscore` and `human_factscore` (with gamma), `init_score`/`human_init_score`
    (without), `error` (ours - human), `fact_agreement` (share of facts where the judge
    agrees with the human label), `judged_supported_ratio`/`human_supported_ratio`, counts."""
    retrieval = BM25Retrieval(knowledge)
    per_source = {}
    for source in sources:
        records = read_labeled(source, labeled_dir)[:limit]
        usable = [r for r in records if r["topic"] in knowledge]
        facts = [labeled_facts(r, irrelevant) for r in usable]
        claims = [(r["topic"], text) for r, fs in zip(usable, facts) for text, _ in fs or []]
        if log:
            log(f"{source}: judging {len(claims)} human atomic facts of {len(usable)} responses")
        decisions = judge_support(claims, retrieval, judge, config.n_passages, config.judge_max_new_tokens)
        ours, human, cursor = [], [], 0
        for fs in facts:
            n = len(fs or [])
            ours.append(None if fs is None else [d["is_supported"] for d in decisions[cursor : cursor + n]])
            human.append(None if fs is None else [s for _, s in fs])
            cursor += n
        a, h = aggregate(ours, config.gamma), aggregate(human, config.gamma)
        judged = [d["is_supported"] for d in decisions]
        truth = [s for fs in facts for _, s in fs or []]
        per_source[source] = {
            "factscore": a["score"],
            "human_factscore": h["score"],
            "error": None if a["score"] is None or h["score"] is None else a["score"] - h["score"],
            "init_score": a["init_score"],
            "human_init_score": h["init_score"],
            "respond_ratio": h["respond_ratio"],
            "fact_agreement": sum(x == y for x, y in zip(judged, truth)) / len(truth) if truth else None,
            "judged_supported_ratio": sum(judged) / len(judged) if judged else None,
            "human_supported_ratio": sum(truth) / len(truth) if truth else None,
            "num_records": len(records),
            "num_missing_knowledge": len(records) - len(usable),
            "num_generations": len(usable),
            "num_facts": len(truth),
        }
    return {
        "sources": per_source,
        "judge": judge.name,
        "knowledge": str(knowledge.path),
        "irrelevant": irrelevant,
        "config": asdict(config),
        "fingerprint": fingerprint(judge.name, knowledge.identity, irrelevant, asdict(config), list(sources), limit),
    }
