"""Presets hold Table 4's numbers and the paper's step ratios; the CLI parses into them."""

import pytest

from trainer.__main__ import parse_args
from trainer.masks import METHODS
from trainer.presets import get_preset
from trainer.train import learning_rate


def test_paper_step_counts():
    p = get_preset("paper-334m")
    steps = {m: p.run(m).steps for m in METHODS}
    assert steps["baseline"] == 340_000
    assert {steps[m] for m in ("loss_based", "rho1", "llm_judge", "spacy", "lacy", "spacy_refloss")} == {400_000}
    assert steps["lacy_ignorefacts"] == 440_000 and steps["lacy_ignore"] == 460_000
    ref = p.run("reference")
    assert (ref.model_size, ref.steps, ref.lr, ref.batch_size) == ("1.3b", 2_540_000, 1.5e-4, 112)


@pytest.mark.parametrize("name, size, batch, lr, warmup", [("paper-334m", "334m", 128, 2e-4, 2560), ("paper-1.3b", "1.3b", 112, 1e-4, 6400)])
def test_table_4(name, size, batch, lr, warmup):
    r = get_preset(name).run("lacy")
    assert (r.model_size, r.context, r.batch_size, r.lr, r.warmup_steps, r.weight_decay) == (size, 1024, batch, lr, warmup, 0.1)
    assert r.grad_accumulation(8) * 8 * r.micro_batch_size == batch


def test_embedded_ratios():
    p = get_preset("embedded")
    base = p.run("baseline").steps
    assert p.run("lacy").steps == round(base / 0.85) and p.run("lacy_ignore").steps == round(base / 0.85 * 1.15)
    assert p.run("reference").steps > p.run("lacy_ignore").steps


def test_warmup_then_constant():
    r = get_preset("paper-334m").run("lacy")
    assert learning_rate(r, 0) == pytest.approx(2e-4 / 2560)
    assert learning_rate(r, 1279) == pytest.approx(1e-4)
    assert learning_rate(r, 2559) == learning_rate(r, 300_000) == 2e-4


def test_batch_that_does_not_split_is_refused():
    with pytest.raises(ValueError, match="cannot be split over 3 processes"):
        get_preset("paper-334m").run("lacy").grad_accumulation(3)


def test_cli():
    cfg = parse_args(["--method", "rho1", "--data", "a", "--data", "b", "--ref-losses", "r", "--out", "o", "--max-steps", "5"])
    assert cfg.data == ("a", "b") and cfg.ref_losses == ("r",) and cfg.preset == "embedded" and cfg.max_steps == 5
    with pytest.raises(SystemExit):
        parse_args(["--method", "nope", "--data", "a", "--out", "o"])
