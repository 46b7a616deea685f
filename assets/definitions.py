"""The one Definitions object of the lacy Dagster project, built from the registry of
evaluations (`build_definitions`)."""

from collections.abc import Sequence

from dagster import Definitions, PipesSubprocessClient

from assets.automation import checkpoint_sensor, reevaluation_schedule
from assets.data import DATA_ASSETS, DATA_CHECKS
from assets.evaluation import ACCEPTABILITY_JUDGE, EVALUATIONS, JUDGE_ENV, knowledge_source
from assets.jobs import stage_jobs
from assets.registry import Evaluation
from assets.report import report_asset
from assets.resources import JudgeResource, LacyStorage
from assets.testbed import TESTBED_ASSETS
from assets.training import TRAINING_ASSETS


def build_definitions(evaluations: Sequence[Evaluation], resources: dict | None = None) -> Definitions:
    """Every asset, job, sensor and schedule, the evaluation ones derived from `evaluations`;
    `resources` replace the default ones (the storage root, the Pipes client, the judge of
    the environment)."""
    report = report_asset(evaluations)
    defaults = {"storage": LacyStorage(), "pipes_subprocess_client": PipesSubprocessClient(),
                ACCEPTABILITY_JUDGE: JudgeResource.from_env(JUDGE_ENV)}
    return Definitions(
        assets=[*DATA_ASSETS, *TRAINING_ASSETS, knowledge_source, *(e.asset for e in evaluations), report, *TESTBED_ASSETS],
        asset_checks=[*DATA_CHECKS],
        jobs=stage_jobs(evaluations, report),
        sensors=[checkpoint_sensor(evaluations)],
        schedules=[reevaluation_schedule(evaluations)],
        resources={**defaults, **(resources or {})},
    )


defs = build_definitions(EVALUATIONS)
