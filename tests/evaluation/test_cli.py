"""`lacy generate` end to end on stand-in checkpoints."""

from __future__ import annotations

import json

import pytest

from evaluation.cli import build_parser, main


def test_generate_marks_partner_tokens(random_checkpoint, trained_checkpoint, capsys):
    # every step calls (budget 1.0): the trained partner writes the whole continuation
    assert main(["generate", "--model", str(random_checkpoint), "--partner", str(trained_checkpoint),
                 "--call-budget", "1.0", "--max-new-tokens", "4", "--no-color", "the cat"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("the cat[[ sat on the mat]]")
    assert "call rate 1.000 (4 calls in 4 steps)" in out and "4/4 tokens from the partner" in out


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
