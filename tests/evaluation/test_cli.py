"""`lacy generate` end to end on stand-in checkpoints."""

from __future__ import annotations

import json

import pytest

from evaluation.cli import build_parser, main
from tests.evaluation.openai_server import FakeOpenAIServer, completions_like_vllm


def test_generate_marks_partner_tokens(random_checkpoint, trained_checkpoint, capsys):
    # every step calls (target 1.0): the trained partner writes the whole continuation
    assert main(["generate", "--model", str(random_checkpoint), "--partner", str(trained_checkpoint),
                 "--target-call-rate", "1.0", "--max-new-tokens", "4", "--no-color", "the cat"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("the cat[[ sat on the mat]]")
    assert "call rate 1.000 (4 calls in 4 steps)" in out and "4/4 tokens from the partner" in out


def test_generate_with_a_served_partner(random_checkpoint, foreign_partner, capsys):
    with FakeOpenAIServer(completions_like_vllm(foreign_partner)) as server:
        assert main(["generate", "--model", str(random_checkpoint), "--backend", "openai", "--base-url", server.base_url,
                     "--partner", "served-partner", "--target-call-rate", "1.0", "--max-new-tokens", "4", "--no-color",
                     "the cat"]) == 0
    assert "call rate 1.000 (4 calls in 4 steps)" in capsys.readouterr().out
    assert len(server.requests) == 4 and {r["body"]["model"] for r in server.requests} == {"served-partner"}
    assert all(r["body"]["prompt"].startswith("the cat") for r in server.requests)


def test_generate_no_call_needs_no_partner(trained_checkpoint, capsys):
    assert main(["generate", "--model", str(trained_checkpoint), "--no-call", "--max-new-tokens", "4",
                 "--json", "the cat"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["text"] == "sat on the mat" and record["calls"] == 0 and record["call_rate"] == 0.0


def test_generate_requires_a_partner_when_calling(trained_checkpoint):
    with pytest.raises(SystemExit, match="--partner"):
        main(["generate", "--model", str(trained_checkpoint), "the cat"])


def test_parser_lists_generate():
    assert "generate" in build_parser().format_help()
