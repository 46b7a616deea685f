"""The testbed's one command, end to end on a tiny world with smoke-sized models: through
its Dagster asset first, then the driver again, which finds every stage complete."""

import pytest
from dagster import materialize

from assets.resources import LacyStorage
from assets.testbed import synthetic_testbed
from evaluation.testbed import run as synthetic_run
from trainer.presets import REFERENCE

TINY = {"source": "embedded:synthetic-bios?people=40&head_people=4&head_documents=6", "preset": "synthetic-smoke",
        "vocab_size": 400, "max_steps": 4, "workers": 1, "threads": 1}


@pytest.mark.slow
def test_synthetic_testbed_end_to_end(tmp_path):
    result = materialize([synthetic_testbed], resources={"storage": LacyStorage(root=str(tmp_path))},
                         run_config={"ops": {"synthetic_testbed": {"config": {**TINY, "people_per_bucket": 2}}}})
    assert result.success
    root = tmp_path / "synthetic"
    text = (root / "report" / "report.md").read_text()
    assert "Figure 2 analogue" in text and "Call-decision quality" in text
    assert (root / "report" / "figure2_precision_vs_leakage.png").exists() and (root / "report" / "figure5_call_losses.png").exists()
    for name in (REFERENCE, *synthetic_run.METHODS):
        assert (root / "evaluation" / f"{name}.json").exists()
        assert f"| {name} |" in text
    again = synthetic_run.Testbed(synthetic_run.TestbedConfig(root=str(root), **TINY), log=lambda _: None)
    again.run()
    assert set(again.seconds) == {"total"}  # no stage ran again
