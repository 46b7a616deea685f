import math
import sqlite3

import numpy as np
import pytest
from rank_bm25 import BM25Okapi

from evaluation.factscore.knowledge import (
    SPECIAL_SEPARATOR,
    BM25Retrieval,
    KnowledgeSource,
    KnowledgeSourceError,
    approx_roberta_tokens,
    article_paragraphs,
    build_knowledge_db,
    passage_plain_text,
    pretokens,
    read_factscore_tsv,
    split_passages,
    write_knowledge_db,
)
from tests.evaluation.factscore.factscore_fixtures import EARL, small_knowledge


@pytest.fixture(scope="module")
def sample_db(tmp_path_factory):
    """The 10 rows of FActScore's real enwiki-20230401.db, written back as SQLite."""
    path = tmp_path_factory.mktemp("enwiki") / "enwiki-10samples.db"
    stats = write_knowledge_db(path, read_factscore_tsv())
    assert stats["documents"] == 10
    return KnowledgeSource(path)


def test_reader_parses_factscore_db_format(sample_db):
    assert len(sample_db) == 10
    assert "Kalki Koechlin" not in sample_db and "Jeff Hammond" in sample_db
    passages = sample_db.passages("Victorian Architecture Awards")
    assert len(passages) == 2
    assert passages[0]["title"] == "Victorian Architecture Awards"
    assert passages[0]["text"].startswith("<s>Victorian Architecture Awards The Victorian Architecture Awards are")
    # the real DB cuts between BPE tokens, here inside "Alterations"
    assert passages[0]["text"].endswith("Houses – Alter") and passages[1]["text"].startswith("ations and Additions")
    assert [len(sample_db.passages(t)) for t in ("Evrim Demirel", "2010 Real Salt Lake season")] == [6, 5]
    with pytest.raises(KeyError, match="Kalki Koechlin"):
        sample_db.passages("Kalki Koechlin")


def test_reader_rejects_files_that_are_not_knowledge_sources(tmp_path):
    with pytest.raises(FileNotFoundError, match="no knowledge source"):
        KnowledgeSource(tmp_path / "missing.db")
    other = tmp_path / "other.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE pages (title, text)")
    con.commit()
    con.close()
    with pytest.raises(KnowledgeSourceError, match="no `documents` table"):
        KnowledgeSource(other)


def test_passage_length_approximation_matches_the_real_db():
    """Re-split each sample article from its paragraphs: our passage count equals
    FActScore's for 9 of 10 articles (off by one for the other), and our token estimate of
    FActScore's full 256-token passages is right on average."""
    same, ratios = 0, []
    for _, db_text in read_factscore_tsv():
        real = db_text.split(SPECIAL_SEPARATOR)
        paragraphs = [p.replace("<s>", "") for p in "".join(real).split("</s>") if p.replace("<s>", "").strip()]
        ours = split_passages(paragraphs)
        assert abs(len(ours) - len(real)) <= 1
        same += len(ours) == len(real)
        for passage in real[:-1]:  # all but the last passage are full
            estimate = sum(approx_roberta_tokens(t) for t in pretokens(passage_plain_text(passage)))
            ratios.append((estimate + passage.count("<s>") + passage.count("</s>")) / 256)
    assert same >= 9
    assert len(ratios) == 19 and 0.95 < np.mean(ratios) < 1.05


def test_approx_roberta_tokens_by_hand():
    assert pretokens("Ralph Earl's 1751 portraits!") == ["Ralph", " Earl", "'s", " 1751", " portraits", "!"]
    # 1 + (characters beyond the 4th) // 4: "Ralph" 5 -> 1, " portraits" 9 -> 2, "Worcestershire" 14 -> 3
    assert [approx_roberta_tokens(t) for t in ("Ralph", " portraits", "Worcestershire", "!")] == [1, 2, 3, 1]


def test_article_paragraphs_follow_the_db_layout():
    paragraphs = article_paragraphs("Ralph Earl", EARL)
    assert paragraphs[0].startswith("Ralph Earl Ralph Earl (May 11, 1751")
    assert paragraphs[1].startswith("Early life. Ralph Earl was born in Shrewsbury")
    assert paragraphs[2] == "Career. He painted a panorama of Niagara Falls and died in Bolton, Connecticut."


def test_split_passages_fills_then_continues_by_hand():
    # costs: <s>=1, "one"=1, " two"=1, " three"=1, </s>=1 -> 5; "four five" -> 1+1+1+1 = 4
    # the next paragraph's <s> still fits (6 of 6), "four" opens a new passage
    assert split_passages(["one two three", "four five"], max_tokens=6) == ["<s>one two three</s><s>", "four five</s>"]


def test_split_passages_exact_long_paragraph():
    # 9 pieces of cost 1: <s> a b c d e f g </s>; max 4 -> [<s> a b c] [d e f g] [</s>] and
    # the last, holding only </s>, is dropped as FActScore drops special-token-only passages
    assert split_passages(["a b c d e f g"], max_tokens=4) == ["<s>a b c", " d e f g"]


def test_build_knowledge_db_skips_repeated_titles_and_is_atomic(tmp_path):
    path = tmp_path / "k.db"
    stats = build_knowledge_db(path, [("Ralph Earl", EARL), ("Ralph Earl", "Ralph Earl\n\nother text")])
    assert stats["documents"] == 1 and stats["skipped_duplicate_titles"] == 1
    assert not list(tmp_path.glob(".tmp-*"))
    with KnowledgeSource(path) as ks:
        assert "other text" not in "".join(p["text"] for p in ks.passages("Ralph Earl"))


def _okapi_by_hand(corpus, query, k1=1.5, b=0.75, eps=0.25):
    n = len(corpus)
    df = {w: sum(w in d for d in corpus) for d in corpus for w in d}
    raw = {w: math.log(n - f + 0.5) - math.log(f + 0.5) for w, f in df.items()}
    floor = eps * sum(raw.values()) / len(raw)
    idf = {w: floor if v < 0 else v for w, v in raw.items()}
    avgdl = sum(map(len, corpus)) / n
    return [
        sum(idf.get(q, 0) * d.count(q) * (k1 + 1) / (d.count(q) + k1 * (1 - b + b * len(d) / avgdl)) for q in query)
        for d in corpus
    ]


def test_bm25_scores_are_factscores_okapi_formula():
    """FActScore ranks with rank_bm25's BM25Okapi: idf log(N - n + 0.5) - log(n + 0.5), a
    negative idf replaced by epsilon times the mean idf."""
    corpus = [["the", "cat", "sat"], ["the", "dog", "sat", "down"], ["the", "cat", "ran"], ["a", "bird"]]
    bm25 = BM25Okapi(corpus)
    # "the" is in 3 of 4 documents: raw idf log(1.5) - log(3.5) < 0, floored at 0.25 * mean idf
    assert math.log(1.5) - math.log(3.5) < 0 and bm25.idf["the"] > 0
    for query in (["cat"], ["the", "sat"], ["bird", "cat", "cat"], ["unknown"]):
        np.testing.assert_allclose(bm25.get_scores(query), _okapi_by_hand(corpus, query), rtol=1e-12)
    assert not bm25.get_scores(["cat"]).any()  # in half of the documents: idf exactly 0


def test_retrieval_queries_topic_and_atom_within_the_topic(tmp_path):
    ks = small_knowledge(tmp_path, max_tokens=24)  # several passages per article
    retrieval = BM25Retrieval(ks)
    passages = ks.passages("Ralph Earl")
    assert len(passages) >= 4
    top = retrieval.get_passages("Ralph Earl", "He painted a panorama of Niagara Falls.", k=2)
    assert len(top) == 2 and "Niagara" in passage_plain_text(top[0]["text"])
    # scored exactly by BM25Okapi on whitespace tokens of `topic + " " + atom`
    query = "Ralph Earl He painted a panorama of Niagara Falls.".split()
    scores = BM25Okapi([passage_plain_text(p["text"]).split() for p in passages]).get_scores(query)
    assert [p["text"] for p in top] == [passages[i]["text"] for i in np.argsort(-scores, kind="stable")[:2]]
    assert {p["title"] for p in retrieval.get_passages("Marie Curie", "Ralph Earl", k=5)} == {"Marie Curie"}
    assert len(retrieval.get_passages("Ralph Earl", "painter", k=50)) == len(passages)
