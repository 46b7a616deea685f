"""The one Definitions object of the lacy Dagster project."""

from dagster import Definitions, PipesSubprocessClient

from assets.automation import new_checkpoints, reevaluate_stale_checkpoints
from assets.data import DATA_ASSETS, DATA_CHECKS
from assets.evaluation import EVALUATION_ASSETS
from assets.jobs import JOBS
from assets.report import comparison_report
from assets.resources import LacyStorage
from assets.testbed import TESTBED_ASSETS
from assets.training import TRAINING_ASSETS

defs = Definitions(
    assets=[*DATA_ASSETS, *TRAINING_ASSETS, *EVALUATION_ASSETS, comparison_report, *TESTBED_ASSETS],
    asset_checks=[*DATA_CHECKS],
    jobs=JOBS,
    sensors=[new_checkpoints],
    schedules=[reevaluate_stale_checkpoints],
    resources={"storage": LacyStorage(), "pipes_subprocess_client": PipesSubprocessClient()},
)
