"""The testbed's one command, end to end on a tiny world with smoke-sized models."""

import pytest

from evaluation.synthetic import SyntheticEvalConfig
from evaluation.synthetic_run import METHODS, Testbed, TestbedConfig
from trainer.presets import REFERENCE


@pytest.mark.slow
def test_synthetic_testbed_end_to_end(tmp_path):
    config = TestbedConfig(root=str(tmp_path / "synthetic"), source="embedded:synthetic-bios?people=40&head_people=4&head_documents=6",
                           preset="synthetic-smoke", vocab_size=400, max_steps=4, workers=1, threads=1,
                           evaluation=SyntheticEvalConfig(people_per_bucket=2, max_new_tokens=16, leakage_people_per_bucket=2,
                                                          call_documents=4))
    testbed = Testbed(config, log=lambda _: None)
    report = testbed.run()
    text = report.read_text()
    assert "Figure 2 analogue" in text and "Call-decision quality" in text
    assert (report.parent / "figure2_precision_vs_leakage.png").exists() and (report.parent / "figure5_call_losses.png").exists()
    for name in (REFERENCE, *METHODS):
        assert (tmp_path / "synthetic" / "evaluation" / f"{name}.json").exists()
        assert f"| {name} |" in text
    again = Testbed(config, log=lambda _: None)  # a second run finds every stage complete
    again.run()
    assert set(again.seconds) == {"total"}
