"""`synthetic_testbed`: the synthetic-biography testbed (issue 11) as one asset. It runs
the same driver as `make synthetic` (`evaluation.testbed.run`) under the storage root's
`synthetic/` folder, which resumes from the stages already complete, and shows the report."""

from dataclasses import replace

from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset

from assets.resources import LacyStorage
from evaluation.testbed import exact as synthetic
from evaluation.testbed import report as synthetic_report
from evaluation.testbed import run as synthetic_run
from evaluation.testbed.run import Testbed, TestbedConfig
from pipelines.files import code_fingerprint

DEFAULTS = TestbedConfig()


class SyntheticTestbedConfig(Config):
    source: str = DEFAULTS.source
    preset: str = DEFAULTS.preset
    vocab_size: int = DEFAULTS.vocab_size
    max_steps: int | None = None
    workers: int = DEFAULTS.workers
    threads: int = DEFAULTS.threads
    people_per_bucket: int = DEFAULTS.evaluation.people_per_bucket


@asset(group_name="synthetic", pool="gpu", code_version=code_fingerprint(synthetic, synthetic_report, synthetic_run))
def synthetic_testbed(context: AssetExecutionContext, config: SyntheticTestbedConfig, storage: LacyStorage) -> MaterializeResult:
    """The synthetic-biography world: corpus, knowledge base, labels, the reference and five
    methods, exact factual precision, leakage and call decisions, and the comparison report
    (artifacts/synthetic/)."""
    testbed_config = TestbedConfig(root=str(storage.path("synthetic")), source=config.source, preset=config.preset,
                                   vocab_size=config.vocab_size, max_steps=config.max_steps, workers=config.workers,
                                   threads=config.threads,
                                   evaluation=replace(DEFAULTS.evaluation, people_per_bucket=config.people_per_bucket))
    report = Testbed(testbed_config, log=context.log.info).run()
    return MaterializeResult(metadata={"report": MetadataValue.md(report.read_text()), "path": MetadataValue.path(str(report))})
