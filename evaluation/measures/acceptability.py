"""Acceptability (section 3, Figure 3, appendix A.1): at every position of a fixed batch of
validation documents, the model's greedy next token, the true token, the model's loss on
the true token, the spaCy class and whether the two tokens are equal (accuracy); a judge
decides whether the greedy token is acceptable. One Parquet table per token and the Figure 3
analogue: accuracy and acceptability against loss bins, facts and non-facts apart.

The evaluation's rules:
- Documents: the first `AcceptabilityConfig.documents` validation documents (the paper's
  fixed batch of 112), in shard order and row order as `validation.validation_documents`
  reads them; all of them when the split has fewer.
- Each document is read alone after an EOS, as training reads it after the separator: the
  input is `EOS d_0 ... d_{n-2}` and the targets are `d_0 ... d_{n-1}` ("starting from token
  1" of `EOS d`). A document longer than the context keeps its first `context` tokens.
  `position` is the target's index in the document (0: its first token).
- Greedy token: the argmax of the logits over the vocabulary without `<CALL>` (the text the
  model would write; ties go to the lower id). Loss: -log p(true token) under the softmax
  over the same vocabulary (`LogitStats.token_loss`, what the call masks rank on), in nats.
- Texts are decoded in context with our tokenizer (`token_text`): a token's text is what it
  adds to the decoding of the 8 tokens before it, spaces included ("" for EOS and other
  control tokens); `starting_text` is the decoding of the document's tokens before the
  target, so starting_text + reference_next_token is the document's text up to the target.
- Facts: `token_class == FACT` (A.2.1); non-facts: grammatical or other. A token without a
  class (UNLABELED) counts only in "all".
- `judge_matches`: with True (the default, A.1: "at each position") every position is
  judged; with False a greedy token equal to the true one is acceptable without a call.
- Loss bins (`loss_bins`, edges e_0 < ... < e_k): [e_j, e_{j+1}) and the last [e_k, inf);
  a loss below e_0 (only by rounding) falls in the first bin. The default edges 0, 1, ..., 10
  nats. Per bin and group: tokens, accuracy (mean of correct), acceptability (mean of the
  verdicts over the tokens with one; None when there is none) and unparseable (tokens
  without a verdict).

The A.1 judge (`PromptJudge`, any `TextLLM` of `evaluation.backends`): the prompt as the
paper prints it (`ACCEPTABILITY_PROMPT`), read from the extracted text with these choices:
- the page break inside Example 2 (a closing and an opening code fence between its
  starting_text and proposed_next_token lines, with blank lines) is removed: the two lines
  follow each other as in Examples 1 and 3;
- the line breaks and indents inside the box are kept as printed (including the break
  inside Example 3's starting_text): whether they are the listing's wrapping cannot be told
  from the paper (as `cascade.generate.RAG_TEMPLATE` does);
- the prompt ends at "**explanation**:" (the blank line before the closing fence is the
  box's margin); the paper's literal "\\n" inside Example 1's and 3's quoted texts are kept.
The three fields fill the `'{}'` slots inside their single quotes, escaped as the paper's
examples write newlines (`quote_field`): a backslash becomes "\\\\", a single quote "\\'",
a newline "\\n", a carriage return "\\r", a tab "\\t". (The paper's examples put a word's
leading space at the end of starting_text; ours stay with the token, decoded in context.)
The answer: `OUTPUT_PATTERN` (`**output**:`, case-insensitive, optional spaces or tabs, then
0 or 1 not followed by a word character) must match at least once and every match must
give the same label; anything else is unparseable (None), counted and shown (logged, and
kept in `PromptJudge.unparseable`).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from matplotlib.figure import Figure

from evaluation import checkpoint
from evaluation.backends.text import CachedLLM, TextLLM
from evaluation.checkpoint import LoadedCheckpoint, load_checkpoint
from evaluation.measures.validation import check_tokenizer, token_stats, validation_documents
from pipelines.classes import FACT, GRAMMATICAL, OTHER
from pipelines.files import code_fingerprint, fingerprint, write_json
from pipelines.shards import read_manifest
from pipelines.tokenizer import Tokenizer


@dataclass(frozen=True)
class AcceptabilityQuery:
    doc_id: str
    position: int  # the target's index in the document's tokens
    starting_text: str  # the document's text before the target token
    proposed_next_token: str  # the model's greedy token, decoded in context ("" for EOS)
    reference_next_token: str  # the true token, decoded in context


class AcceptabilityJudge(Protocol):
    name: str

    def judge(self, queries: Sequence[AcceptabilityQuery]) -> list[int | None]:
        """Per query: 1 acceptable (valid), 0 not, None without a verdict (unparseable)."""
        ...


# ---------------------------------------------------------------- the A.1 judge

# A.1, "Prompt for Judging Acceptability", as printed (reading of the extraction: module docstring)
ACCEPTABILITY_PROMPT = r"""# Task
You must evaluate whether a proposed next token is a valid continuation of a
given text.

# Input
You will receive three pieces of information:
1. **starting_text**: The initial text segment
2. **proposed_next_token**: A token that could continue the starting_text
3. **reference_next_token**: A reference token for comparison

# Evaluation Criteria
The proposed_next_token is VALID if:
- Joining starting_text + proposed_next_token creates a statement that is
  logically and factually compatible with starting_text +
  reference_next_token
- The two resulting statements do not contradict each other
- The two resulting statements have similar meaning

The proposed_next_token is INVALID if:
- Joining starting_text + proposed_next_token creates a statement that
  contradicts, conflicts with, or significantly changes the meaning of
  starting_text + reference_next_token

# Output Format
Provide:
1. **explanation**: Your reasoning for the decision
2. **output**: A binary label (1 = valid, 0 = invalid)

# Examples

## Example 1: Invalid Continuation
**starting_text**: 'Wolfgang Amadeus Mozart\n\n (27 January 17'
**proposed_next_token**: '6'
**reference_next_token**: '5'
**explanation**: The proposed_next_token does not match reference_next_token.
  Completing with '6' would create 'Wolfgang Amadeus Mozart (27 January
  176...', while the reference creates '...175...'. Mozart was born in 1756,
  and the reference token '5' indicates the correct continuation is 1756 (
  starting with 175). The digit '6' creates a factual conflict because it
  would lead to an incorrect year.
**output**: 0

## Example 2: Invalid Continuation
**starting_text**: 'Alan Turing was an English '
**proposed_next_token**: 'linguist'
**reference_next_token**: 'mathematician'
**explanation**: The proposed_next_token does not match reference_next_token.
    Completing with 'linguist' would create 'Alan Turing was an English
    linguist', while the reference creates 'Alan Turing was an English
    mathematician'. This creates a significant difference in meaning. Hence
    the continuation is invalid.
**output**: 0

## Example 3: Valid Continuation
**starting_text**: 'Entre Campos (Lisbon Metro)\n\nEntre Campos station is
    part of the '
**proposed_next_token**: 'metro'
**reference_next_token**: 'Yellow'
**explanation**: The proposed_next_token does not match reference_next_token,
    but it does not create a factual conflict. The reference would create 'Entre
    Campos station is part of the Yellow [line]', while the proposal
    creates 'Entre Campos station is part of the metro [network/system]'. Both
    statements have similar meaning and are factually true and compatible -
    the station IS part of the Yellow line AND part of the metro system. These
    are not contradictory facts.
**output**: 1

# Your Task
**starting_text**: '{}'
**proposed_next_token**: '{}'
**reference_next_token**: '{}'
**explanation**:"""
OUTPUT_PATTERN = re.compile(r"\*\*output\*\*:[ \t]*([01])(?!\w)", re.IGNORECASE)
_ESCAPES = str.maketrans({"\\": "\\\\", "'": "\\'", "\n": "\\n", "\r": "\\r", "\t": "\\t"})


def quote_field(text: str) -> str:
    """`text` escaped for a single-quoted slot of the prompt (rule in the module docstring)."""
    return text.translate(_ESCAPES)


def acceptability_prompt(query: AcceptabilityQuery) -> str:
    return ACCEPTABILITY_PROMPT.format(quote_field(query.starting_text), quote_field(query.proposed_next_token),
                                       quote_field(query.reference_next_token))


def parse_verdict(answer: str) -> int | None:
    """The label of an answer: the matches of `OUTPUT_PATTERN`, all equal; else None."""
    labels = {int(m.group(1)) for m in OUTPUT_PATTERN.finditer(answer)}
    return labels.pop() if len(labels) == 1 else None


class PromptJudge:
    """The A.1 judge through any backend of the family (`evaluation.backends`): requests go
    out as the backend sends them (an OpenAI-compatible endpoint: `concurrency` in flight;
    vLLM and transformers: batched), answers are cached by their inputs when `llm` is a
    `CachedLLM` (its key holds the prompt, which holds the three fields), and `chunk_size`
    queries at a time, so a crash loses at most one chunk. The number of judge calls (the
    queries whose answer is not cached) is logged before the first request."""

    def __init__(self, llm: TextLLM, max_new_tokens: int = 256, chunk_size: int = 1024,
                 log: Callable[[str], None] = print, shown: int = 5):
        self.llm, self.max_new_tokens, self.chunk_size, self.log, self.shown = llm, max_new_tokens, chunk_size, log, shown
        self.name = f"a1:{llm.name}"
        self.unparseable: list[tuple[AcceptabilityQuery, str]] = []

    def judge(self, queries: Sequence[AcceptabilityQuery]) -> list[int | None]:
        prompts = [acceptability_prompt(q) for q in queries]
        cached = isinstance(self.llm, CachedLLM)
        calls = self.llm.calls(prompts, self.max_new_tokens) if cached else len(prompts)
        self.log(f"acceptability judge {self.llm.name}: {len(queries)} queries, {calls} judge calls"
                 + (" (the others answered from the cache)" if cached else ""))
        answers: list[str] = []
        for start in range(0, len(prompts), self.chunk_size):
            answers += self.llm.generate(prompts[start:start + self.chunk_size], self.max_new_tokens)
        verdicts = [parse_verdict(a) for a in answers]
        failed = [(q, a) for q, a, v in zip(queries, answers, verdicts) if v is None]
        self.unparseable += failed
        if failed:
            self.log(f"acceptability judge {self.llm.name}: {len(failed)} of {len(answers)} answers unparseable, e.g.")
            for q, a in failed[:self.shown]:
                self.log(f"  {q.doc_id}@{q.position}: {a[-300:]!r}")
        return verdicts


# ---------------------------------------------------------------- the evaluation


@dataclass(frozen=True)
class AcceptabilityConfig:
    documents: int = 112  # the paper's fixed validation batch (A.1); fewer when the split has fewer
    loss_bins: tuple[float, ...] = tuple(float(e) for e in range(11))  # edges in nats; the last bin is open
    judge_matches: bool = True  # False: a greedy token equal to the true one is acceptable without a call

    def __post_init__(self):
        if self.documents < 1:
            raise ValueError(f"documents must be at least 1, got {self.documents}")
        if len(self.loss_bins) < 1 or any(b <= a for a, b in zip(self.loss_bins, self.loss_bins[1:])):
            raise ValueError(f"loss_bins must be increasing edges, got {self.loss_bins}")


def token_text(tok: Tokenizer, context: Sequence[int], token_id: int, window: int = 8) -> str:
    """The text `token_id` adds after `context`: the decoding of the last `window` context
    tokens and the token, past its common prefix with the decoding of those tokens alone."""
    tail = [int(t) for t in context[-window:]]
    before, after = tok.decode(tail), tok.decode(tail + [int(token_id)])
    return after[len(os.path.commonprefix([before, after])):]


@dataclass
class ScoredTokens:
    """Per target token of the evaluated documents (columns of the Parquet table), and the
    judge's queries (one per token, in the same order)."""

    doc_id: list[str] = field(default_factory=list)
    position: list[int] = field(default_factory=list)
    target_id: list[int] = field(default_factory=list)
    greedy_id: list[int] = field(default_factory=list)
    target_text: list[str] = field(default_factory=list)
    greedy_text: list[str] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    token_class: list[int] = field(default_factory=list)
    queries: list[AcceptabilityQuery] = field(default_factory=list)


@torch.no_grad()
def score_document(model: LoadedCheckpoint, doc_id: str, ids: np.ndarray, classes: np.ndarray, out: ScoredTokens) -> None:
    """Append the tokens of one document (rules in the module docstring) to `out`."""
    tok = model.tokenizer
    ids = [int(i) for i in ids[: model.max_positions]]  # the input EOS d_0 .. d_{n-2} fills at most the context
    inputs = torch.tensor([[tok.eos_id] + ids[:-1]], device=model.model.device)
    logits = model.model(input_ids=inputs).logits[0]
    greedy = logits[:, : model.call_id].argmax(dim=-1).tolist()
    loss = token_stats(logits, torch.tensor(ids, device=logits.device), model.call_id).token_loss.tolist()
    for i, (target, proposed) in enumerate(zip(ids, greedy)):
        reference_text, proposed_text = token_text(tok, ids[:i], target), token_text(tok, ids[:i], proposed)
        out.doc_id.append(doc_id)
        out.position.append(i)
        out.target_id.append(target)
        out.greedy_id.append(proposed)
        out.target_text.append(reference_text)
        out.greedy_text.append(proposed_text)
        out.loss.append(loss[i])
        out.token_class.append(int(classes[i]))
        out.queries.append(AcceptabilityQuery(doc_id, i, tok.decode(ids[:i]), proposed_text, reference_text))


def token_table(scored: ScoredTokens, acceptable: Sequence[int | None], judged: Sequence[bool]) -> pa.Table:
    """One row per token: ids, texts, loss, class, fact, correct, judged, acceptable (null: no verdict)."""
    target, greedy, cls = (np.asarray(v) for v in (scored.target_id, scored.greedy_id, scored.token_class))
    return pa.table({
        "doc_id": pa.array(scored.doc_id, pa.string()),
        "position": pa.array(scored.position, pa.int32()),
        "target_id": pa.array(target, pa.int32()),
        "greedy_id": pa.array(greedy, pa.int32()),
        "target_text": pa.array(scored.target_text, pa.string()),
        "greedy_text": pa.array(scored.greedy_text, pa.string()),
        "loss": pa.array(scored.loss, pa.float32()),
        "token_class": pa.array(cls, pa.int8()),
        "fact": pa.array(cls == FACT),
        "correct": pa.array(target == greedy),
        "judged": pa.array(list(judged), pa.bool_()),
        "acceptable": pa.array(list(acceptable), pa.int8()),
    })


GROUPS = ("all", "fact", "non_fact")


def group_stats(correct: np.ndarray, acceptable: np.ndarray) -> dict:
    """`acceptable`: float, NaN where there is no verdict."""
    verdicts = acceptable[~np.isnan(acceptable)]
    return {
        "tokens": int(len(correct)),
        "accuracy": float(correct.mean()) if len(correct) else None,
        "acceptability": float(verdicts.mean()) if len(verdicts) else None,
        "unparseable": int(len(acceptable) - len(verdicts)),
    }


def bin_labels(edges: Sequence[float]) -> list[str]:
    return [f"[{a:g}, {b:g})" for a, b in zip(edges, [*edges[1:], float("inf")])]


def binned_summary(table: pa.Table, edges: Sequence[float]) -> dict:
    """Overall and per loss bin (module docstring): tokens, accuracy, acceptability and
    unparseable for all tokens, facts and non-facts."""
    loss = table.column("loss").to_numpy()
    correct = table.column("correct").to_numpy(zero_copy_only=False)
    acceptable = table.column("acceptable").to_numpy(zero_copy_only=False).astype(np.float64)  # null -> NaN
    cls = table.column("token_class").to_numpy()
    groups = {"all": np.ones(len(cls), dtype=bool), "fact": cls == FACT, "non_fact": (cls == GRAMMATICAL) | (cls == OTHER)}
    bins = np.clip(np.searchsorted(np.asarray(edges), loss, side="right") - 1, 0, len(edges) - 1)
    per_bin = []
    for b, label in enumerate(bin_labels(edges)):
        in_bin = bins == b
        per_bin.append({"bin": label, "low": float(edges[b]),
                        **{g: group_stats(correct[in_bin & m], acceptable[in_bin & m]) for g, m in groups.items()}})
    return {"overall": {g: group_stats(correct[m], acceptable[m]) for g, m in groups.items()}, "bins": per_bin}


def plot_figure3(summary: dict, path: Path, title: str) -> None:
    """The Figure 3 analogue: accuracy (left) and acceptability (right) per loss bin, facts
    and non-facts apart, with the token counts per bin below."""
    labels = [b["bin"] for b in summary["bins"]]
    x = np.arange(len(labels))
    styles = {"fact": ("tab:red", "facts"), "non_fact": ("tab:blue", "non-facts")}
    fig = Figure(figsize=(11, 6), layout="tight")  # no pyplot: rendered by Agg on save, no global state
    axes = fig.subplots(2, 2, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    for col, metric in enumerate(("accuracy", "acceptability")):
        top, bottom = axes[0, col], axes[1, col]
        for k, (group, (color, name)) in enumerate(styles.items()):
            values = [np.nan if b[group][metric] is None else b[group][metric] for b in summary["bins"]]
            top.plot(x, values, marker="o", color=color, label=name)
            bottom.bar(x + (k - 0.5) * 0.4, [b[group]["tokens"] for b in summary["bins"]], width=0.4, color=color)
        bottom.set_ylim(0, 3 * max(1, *(b[g]["tokens"] for b in summary["bins"] for g in styles)))
        top.set_ylim(-0.02, 1.02)
        top.set_ylabel(metric)
        top.grid(alpha=0.3)
        top.legend()
        bottom.set_ylabel("tokens")
        bottom.set_yscale("symlog")
        bottom.set_xticks(x, labels, rotation=45, ha="right")
        bottom.set_xlabel("loss on the true token (nats)")
    fig.suptitle(title)
    fig.savefig(path, dpi=120)


TABLE_FILE, SUMMARY_FILE, FIGURE_FILE = "acceptability_tokens.parquet", "acceptability.json", "acceptability_figure3.png"


def evaluate_acceptability(
    model: str | Path | LoadedCheckpoint,
    dataset_dir: str | Path,
    judge: AcceptabilityJudge,
    out_dir: str | Path,
    config: AcceptabilityConfig = AcceptabilityConfig(),
    log: Callable[[str], None] = print,
) -> dict:
    """Score the fixed validation batch, ask `judge`, and write the per-token table
    (`TABLE_FILE`), the binned summary (`SUMMARY_FILE`, also returned) and the Figure 3
    analogue (`FIGURE_FILE`) into `out_dir`."""
    model = model if isinstance(model, LoadedCheckpoint) else load_checkpoint(model)
    dataset_dir, out_dir = Path(dataset_dir), Path(out_dir)
    manifest = read_manifest(dataset_dir)
    check_tokenizer(model, dataset_dir, manifest)
    scored, documents = ScoredTokens(), 0
    for doc_id, ids, classes in validation_documents(dataset_dir, manifest):
        if documents == config.documents:
            break
        if len(ids):
            score_document(model, doc_id, ids, classes, scored)
            documents += 1
    if not documents:
        raise ValueError(f"{dataset_dir}: no validation documents")
    correct = [t == g for t, g in zip(scored.target_id, scored.greedy_id)]
    judged = [config.judge_matches or not c for c in correct]
    queries = [q for q, j in zip(scored.queries, judged) if j]
    log(f"acceptability: {documents} documents, {len(correct)} tokens, {len(queries)} to judge with {judge.name}")
    verdicts = judge.judge(queries)
    if len(verdicts) != len(queries):
        raise ValueError(f"judge {judge.name} gave {len(verdicts)} verdicts for {len(queries)} queries")
    answers = iter(verdicts)
    acceptable = [next(answers) if j else 1 for j in judged]
    table = token_table(scored, acceptable, judged)
    out_dir.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out_dir / TABLE_FILE)
    result = {
        "checkpoint": model.identity(),
        "dataset": {"path": str(dataset_dir), "fingerprint": manifest["fingerprint"]},
        "judge": judge.name,
        "config": asdict(config),
        "documents": documents,
        "judge_queries": len(queries),
        **binned_summary(table, config.loss_bins),
        "files": {"tokens": TABLE_FILE, "figure": FIGURE_FILE},
        "code_fingerprint": code_fingerprint(sys.modules[__name__], checkpoint),
    }
    result["fingerprint"] = fingerprint(result["checkpoint"]["fingerprint"], manifest["fingerprint"], judge.name,
                                        result["config"], result["code_fingerprint"])
    plot_figure3(result, out_dir / FIGURE_FILE, f"{model.info['method']} step {model.info['step']}: "
                 f"{documents} documents, {len(correct)} tokens, judge {judge.name}")
    write_json(out_dir / SUMMARY_FILE, result)
    return result
