"""The one Definitions object of the lacy Dagster project."""

from dagster import Definitions

from assets.data import DATA_ASSETS, DATA_CHECKS
from assets.resources import LacyStorage

defs = Definitions(
    assets=[*DATA_ASSETS],
    asset_checks=[*DATA_CHECKS],
    resources={"storage": LacyStorage()},
)
