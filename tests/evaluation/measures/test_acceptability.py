"""Section 3 / A.1: the acceptability evaluation on a tiny checkpoint (greedy tokens, losses,
texts in context, the table, the bins, the figure) and the A.1 judge against a stand-in
OpenAI-compatible server on hand-made cases."""

from __future__ import annotations

import re
import threading
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from evaluation.backends.openai_backend import OpenAIBackend
from evaluation.backends.text import CachedLLM
from evaluation.checkpoint import load_checkpoint
from evaluation.measures.acceptability import (
    ACCEPTABILITY_PROMPT,
    FIGURE_FILE,
    SUMMARY_FILE,
    TABLE_FILE,
    AcceptabilityConfig,
    AcceptabilityQuery,
    PromptJudge,
    acceptability_prompt,
    binned_summary,
    evaluate_acceptability,
    parse_verdict,
    quote_field,
    token_text,
)
from pipelines.classes import FACT, GRAMMATICAL, OTHER, UNLABELED
from tests.evaluation.conftest import REPEATED, write_token_dataset
from tests.evaluation.openai_server import FakeOpenAIServer

MOZART = AcceptabilityQuery("mozart", 7, "Wolfgang Amadeus Mozart\n\n (27 January 17", "6", "5")
ENTRE_CAMPOS = AcceptabilityQuery("lisbon", 12, "Entre Campos (Lisbon Metro)\n\nEntre Campos station is part of the",
                                  " metro", " Yellow")
UNSURE = AcceptabilityQuery("turing", 5, "Alan Turing was an English", " linguist", " mathematician")


# --- the A.1 prompt and its output format ---------------------------------------------------

def test_prompt_is_the_papers_with_its_page_break_removed():
    assert ACCEPTABILITY_PROMPT.startswith("# Task\nYou must evaluate whether a proposed next token is a valid "
                                           "continuation of a\ngiven text.\n\n# Input\n")
    assert "```" not in ACCEPTABILITY_PROMPT  # the page break inside Example 2 is gone
    assert ("## Example 2: Invalid Continuation\n**starting_text**: 'Alan Turing was an English '\n"
            "**proposed_next_token**: 'linguist'\n**reference_next_token**: 'mathematician'\n") in ACCEPTABILITY_PROMPT
    assert r"**starting_text**: 'Wolfgang Amadeus Mozart\n\n (27 January 17'" in ACCEPTABILITY_PROMPT  # literal \n
    assert "**starting_text**: 'Entre Campos (Lisbon Metro)\\n\\nEntre Campos station is\n    part of the '" in ACCEPTABILITY_PROMPT
    assert ACCEPTABILITY_PROMPT.count("{}") == 3 and ACCEPTABILITY_PROMPT.count("**output**: ") == 4  # format + 3 examples


def test_filled_prompt_quotes_the_fields_as_the_papers_examples():
    assert acceptability_prompt(MOZART).endswith(
        "# Your Task\n"
        "**starting_text**: 'Wolfgang Amadeus Mozart\\n\\n (27 January 17'\n"
        "**proposed_next_token**: '6'\n"
        "**reference_next_token**: '5'\n"
        "**explanation**:")
    assert quote_field("O'Brien said \"hi\"\tthen\\now\r") == "O\\'Brien said \"hi\"\\tthen\\\\now\\r"
    query = AcceptabilityQuery("d", 0, "{} and {0}", " '", "")
    assert acceptability_prompt(query).endswith(
        "**starting_text**: '{} and {0}'\n**proposed_next_token**: ' \\''\n**reference_next_token**: ''\n**explanation**:")


def test_parse_verdict_hand_worked():
    assert parse_verdict("**explanation**: Both are true.\n**output**: 1") == 1
    assert parse_verdict("**explanation**: 1756 is the year.\n**output**: 0\n") == 0
    assert parse_verdict("**Output**:\t1.") == 1  # case-insensitive; spaces or tabs
    assert parse_verdict("**output**: 1\n\n**output**: 1") == 1  # repeated, the same label
    for answer in ("", "output: 1", "**output**: 10", "**output**: **1**", "**output**: yes",
                   "**output**:\n1", "**output**: 1 ... on second thought **output**: 0"):
        assert parse_verdict(answer) is None, answer


# --- the A.1 judge against a stand-in server ------------------------------------------------

TASK = re.compile(r"# Your Task\n\*\*starting_text\*\*: '(.*)'\n\*\*proposed_next_token\*\*: '(.*)'\n"
                  r"\*\*reference_next_token\*\*: '(.*)'\n\*\*explanation\*\*:$", re.DOTALL)
ANSWERS = {  # (proposed, reference) as quoted in the prompt -> the stand-in judge's answer
    ("6", "5"): "**explanation**: Mozart was born in 1756, not 176x.\n**output**: 0",
    (" metro", " Yellow"): "**explanation**: The station is part of both.\n**output**: 1",
    (" linguist", " mathematician"): "**explanation**: I am not sure what to answer here.",
}


class StandInJudge:
    """A chat endpoint that answers from `ANSWERS` by the fields of the prompt's task, and
    records how many requests are in flight at once (each takes `delay_s`)."""

    def __init__(self, delay_s: float = 0.0):
        self.delay_s, self.in_flight, self.max_in_flight, self.lock = delay_s, 0, 0, threading.Lock()

    def __call__(self, path, body):
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        time.sleep(self.delay_s)
        _, proposed, reference = TASK.search(body["messages"][0]["content"]).groups()
        with self.lock:
            self.in_flight -= 1
        return 200, {}, {"choices": [{"message": {"content": ANSWERS[(proposed, reference)]}}]}


def test_a1_judge_valid_invalid_unparseable():
    logs = []
    with FakeOpenAIServer(StandInJudge()) as server:
        judge = PromptJudge(OpenAIBackend("judge", base_url=server.base_url, api_key_env=None), log=logs.append)
        assert judge.judge([ENTRE_CAMPOS, MOZART, UNSURE]) == [1, 0, None]
    assert sorted(r["body"]["messages"][0]["content"] for r in server.requests) == sorted(
        acceptability_prompt(q) for q in (ENTRE_CAMPOS, MOZART, UNSURE))
    assert all(r["body"]["max_tokens"] == 256 and r["body"]["temperature"] == 0.0 for r in server.requests)
    assert judge.name.startswith("a1:openai-chat:") and [q for q, _ in judge.unparseable] == [UNSURE]
    assert "3 judge calls" in logs[0]  # logged before the requests
    assert "1 of 3 answers unparseable" in logs[1] and "turing@5" in logs[2] and "not sure" in logs[2]


def test_a1_judge_answers_once_from_its_cache(tmp_path):
    cache = tmp_path / "acceptability_cache.jsonl"
    with FakeOpenAIServer(StandInJudge()) as server:
        def judge(logs):
            return PromptJudge(CachedLLM(OpenAIBackend("judge", base_url=server.base_url, api_key_env=None), cache),
                               chunk_size=2, log=logs.append)

        first, second, third = [], [], []
        assert judge(first).judge([MOZART, ENTRE_CAMPOS, MOZART]) == [0, 1, 0]
        assert len(server.requests) == 2 and "3 queries, 2 judge calls" in first[0]  # the repeat is one call
        assert judge(second).judge([ENTRE_CAMPOS, MOZART]) == [1, 0]  # a new process reads the cache
        assert len(server.requests) == 2 and "2 queries, 0 judge calls" in second[0]
        assert judge(third).judge([UNSURE, MOZART]) == [None, 0]
        assert len(server.requests) == 3 and "2 queries, 1 judge calls" in third[0]


def test_a1_judge_requests_are_concurrent():
    stand_in = StandInJudge(delay_s=0.3)
    queries = [AcceptabilityQuery(f"d{i}", i, f"text {i}", "6", "5") for i in range(8)]
    with FakeOpenAIServer(stand_in) as server:
        judge = PromptJudge(OpenAIBackend("judge", base_url=server.base_url, api_key_env=None, concurrency=4), log=lambda _: None)
        start = time.monotonic()
        assert judge.judge(queries) == [0] * 8
        elapsed = time.monotonic() - start
    assert stand_in.max_in_flight == 4  # the endpoint's concurrency, never more
    assert elapsed < 8 * 0.3 / 2  # two waves of four, not eight requests in a row


# --- the evaluation on a tiny checkpoint ------------------------------------------------------

class EqualityJudge:
    """A test double for the judge protocol: valid iff the proposal's text equals the
    reference's; no verdict at position 0. Records its queries."""

    name = "equality-test-double"

    def __init__(self):
        self.queries: list[AcceptabilityQuery] = []

    def judge(self, queries):
        self.queries += queries
        return [None if q.position == 0 else int(q.proposed_next_token == q.reference_next_token) for q in queries]


def test_token_text_in_context(tok):
    ids = tok.encode("The cat sat on the mat.").tolist()
    texts = [token_text(tok, ids[:i], t) for i, t in enumerate(ids)]
    assert "".join(texts) == "The cat sat on the mat."
    assert texts[1].startswith(" ")  # " cat" keeps its space in context
    assert token_text(tok, ids, tok.eos_id) == ""


def test_evaluation_scores_every_position_after_an_eos(random_checkpoint, token_dataset, tok, tmp_path):
    judge = EqualityJudge()
    logs = []
    result = evaluate_acceptability(random_checkpoint, token_dataset, judge, tmp_path, AcceptabilityConfig(documents=3),
                                    log=logs.append)
    table = pq.read_table(tmp_path / TABLE_FILE)
    assert (tmp_path / FIGURE_FILE).stat().st_size > 0 and (tmp_path / SUMMARY_FILE).exists()
    docs = {}
    for shard in ("shard-0000.parquet", "shard-0001.parquet"):
        rows = pq.read_table(token_dataset / shard).to_pylist()
        docs.update({r["doc_id"]: r for r in rows if r["split"] == "validation"})
    evaluated = list(dict.fromkeys(table.column("doc_id").to_pylist()))
    assert len(evaluated) == 3 == result["documents"] and set(evaluated) < set(docs)
    assert table.num_rows == sum(len(docs[d]["input_ids"]) for d in evaluated) == result["overall"]["all"]["tokens"]
    assert "3 documents" in logs[0] and f"{table.num_rows} to judge" in logs[0]
    model = load_checkpoint(random_checkpoint)
    doc_id = evaluated[1]
    ids = docs[doc_id]["input_ids"]
    rows = [r for r in table.to_pylist() if r["doc_id"] == doc_id]
    with torch.no_grad():  # the document after an EOS, by hand
        logits = model.model(input_ids=torch.tensor([[tok.eos_id] + ids[:-1]])).logits[0, :, : model.call_id]
    logp = torch.log_softmax(logits, dim=-1)
    assert [r["position"] for r in rows] == list(range(len(ids)))
    assert [r["target_id"] for r in rows] == ids and [r["token_class"] for r in rows] == docs[doc_id]["token_class"]
    assert [r["greedy_id"] for r in rows] == logits.argmax(-1).tolist()
    assert np.allclose([r["loss"] for r in rows], (-logp[range(len(ids)), ids]).tolist(), atol=1e-5)
    assert "".join(r["target_text"] for r in rows) == tok.decode(ids)
    assert [r["correct"] for r in rows] == [r["greedy_id"] == r["target_id"] for r in rows]
    queries = [q for q in judge.queries if q.doc_id == doc_id]
    assert all(q.starting_text + q.reference_next_token == tok.decode(ids[: q.position + 1]) for q in queries)
    assert [q.proposed_next_token for q in queries] == [r["greedy_text"] for r in rows]
    assert [r["acceptable"] for r in rows] == [None] + [int(r["greedy_text"] == r["target_text"]) for r in rows[1:]]
    assert result["overall"]["all"]["unparseable"] == 3  # position 0 of each document


def test_documents_longer_than_the_context_keep_its_worth(tmp_path, tok, tokenizer_path):
    from evaluation.checkpoint import write_random_checkpoint

    short = write_random_checkpoint(tmp_path / "short", tokenizer_path, n_positions=8)
    data = write_token_dataset(tmp_path / "data", tok, [("The cat sat on the mat and looked at the garden.", "validation")], 1)
    result = evaluate_acceptability(short, data, EqualityJudge(), tmp_path / "out", log=lambda _: None)
    assert result["overall"]["all"]["tokens"] == 8 and result["documents"] == 1


def test_matches_need_no_call_when_asked(trained_checkpoint, tok, tmp_path):
    data = write_token_dataset(tmp_path / "data", tok, [(REPEATED * 3, "validation"), ("The river flows.", "validation")])
    judge = EqualityJudge()
    evaluate_acceptability(trained_checkpoint, data, judge, tmp_path / "out", AcceptabilityConfig(judge_matches=False),
                           log=lambda _: None)
    table = pq.read_table(tmp_path / "out" / TABLE_FILE).to_pylist()
    matched = [r for r in table if r["correct"]]
    assert len(matched) > 10  # the trained model continues its sentence
    assert all(r["acceptable"] == 1 and not r["judged"] for r in matched)
    assert len(judge.queries) == len(table) - len(matched) and all(r["judged"] for r in table if not r["correct"])


def test_binned_summary_hand_worked():
    table = pa.table({
        "loss": pa.array([0.2, 0.9, 1.5, 2.5, 12.0, -1e-7, 3.0], pa.float32()),
        "correct": [True, False, True, False, False, True, False],
        "acceptable": pa.array([1, 1, None, 0, 0, 1, 1], pa.int8()),
        "token_class": pa.array([FACT, GRAMMATICAL, FACT, OTHER, FACT, UNLABELED, FACT], pa.int8()),
    })
    summary = binned_summary(table, (0.0, 1.0, 2.0, 3.0))
    assert [b["bin"] for b in summary["bins"]] == ["[0, 1)", "[1, 2)", "[2, 3)", "[3, inf)"]
    first, second, third, last = summary["bins"]
    # [0, 1): 0.2 (fact, right, 1), 0.9 (grammatical, wrong, 1), -1e-7 (unlabeled: "all" only)
    assert first["all"] == {"tokens": 3, "accuracy": 2 / 3, "acceptability": 1.0, "unparseable": 0}
    assert first["fact"] == {"tokens": 1, "accuracy": 1.0, "acceptability": 1.0, "unparseable": 0}
    assert first["non_fact"] == {"tokens": 1, "accuracy": 0.0, "acceptability": 1.0, "unparseable": 0}
    assert second["fact"] == {"tokens": 1, "accuracy": 1.0, "acceptability": None, "unparseable": 1}
    assert third["non_fact"] == {"tokens": 1, "accuracy": 0.0, "acceptability": 0.0, "unparseable": 0}
    assert third["fact"] == {"tokens": 0, "accuracy": None, "acceptability": None, "unparseable": 0}
    assert last["fact"] == {"tokens": 2, "accuracy": 0.0, "acceptability": 0.5, "unparseable": 0}  # 3.0 and 12.0
    # facts: 0.2 (right, 1), 1.5 (right, none), 12.0 (wrong, 0), 3.0 (wrong, 1)
    assert summary["overall"]["fact"] == {"tokens": 4, "accuracy": 0.5, "acceptability": 2 / 3, "unparseable": 1}
    assert summary["overall"]["non_fact"]["tokens"] == 2 and summary["overall"]["all"]["tokens"] == 7


def test_bad_configs_and_judges_are_refused(random_checkpoint, token_dataset, tmp_path):
    with pytest.raises(ValueError, match="increasing"):
        AcceptabilityConfig(loss_bins=(0.0, 2.0, 1.0))

    class Short(EqualityJudge):
        def judge(self, queries):
            return super().judge(queries)[:-1]

    with pytest.raises(ValueError, match="verdicts for"):
        evaluate_acceptability(random_checkpoint, token_dataset, Short(), tmp_path, AcceptabilityConfig(documents=1),
                               log=lambda _: None)
