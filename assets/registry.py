"""The registry's entry: one `Evaluation` per evaluation of a checkpoint. Everything that
evaluates checkpoints derives from the list of entries (`assets.evaluation.EVALUATIONS`):
the per-checkpoint assets (`Evaluation.asset`), `evaluation_job`, the `new_checkpoints`
sensor (what each evaluation waits on), the re-evaluation schedule (`inputs_fingerprint`
staleness) and the comparison report (the sections, in the list's order). Adding an
evaluation is its module plus one entry.

Each evaluation's asset is partitioned by checkpoint, in the `gpu` pool, and its code version
is the fingerprint of the code it depends on. It calls the entry's `measure`, which returns
the result (a dict recording the evaluated checkpoint's identity under "checkpoint", as
`LoadedCheckpoint.identity` gives it) and the UI's metadata, or None when it evaluated
nothing (it logs why: e.g. no judge is configured); the asset writes the result file
(`assets.results.save_result`) and adds its path to the metadata."""

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path
from types import ModuleType
from typing import Any, get_type_hints

from dagster import AssetExecutionContext, AssetKey, AssetsDefinition, MaterializeResult, MetadataValue, asset

from assets.partitions import checkpoint_partitions
from assets.results import save_result
from evaluation.report.section import SectionBuilder
from pipelines.files import code_fingerprint, file_sha256, fingerprint


@dataclass(frozen=True)
class Measured:
    """What a measure gives its asset: the result file's content and the UI's metadata."""

    result: dict
    metadata: dict = field(default_factory=dict)


def waits_on_nothing(resources: Any) -> list[str]:
    return []


@dataclass(frozen=True, eq=False)
class Evaluation:
    """One evaluation of a checkpoint.

    name: the asset's name and the result file's (`<partition>/<name>.json`).
    measure: `(context, config, storage) -> Measured | None`, the asset's body; its `config`
        annotation (a dagster `Config`) is the asset's run config.
    code, data: the modules and data files its results depend on: a change of either makes
        stored results stale (`inputs_fingerprint`), and the code is the asset's code version.
    waits_on: `(resources) -> [names]`, the inputs of its default config that do not exist
        yet, given the resources (`context.resources`: `storage` and those in `resources`);
        the sensor requests it when there are none, and logs them otherwise.
    section: the report's section builder (`evaluation.report.section`), or None.
    deps: the upstream assets besides the checkpoint.
    reads: the evaluations whose result files it reads: when one of them is stale, so is it.
    resources: the resource keys its measure and waits_on use besides `storage`.
    """

    name: str
    measure: Callable[..., Measured | None]
    code: tuple[ModuleType, ...]
    data: tuple[Path, ...] = ()
    waits_on: Callable[[Any], list[str]] = waits_on_nothing
    section: SectionBuilder | None = None
    deps: tuple = ()
    reads: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()

    @property
    def key(self) -> AssetKey:
        return AssetKey(self.name)

    def code_version(self) -> str:
        return code_fingerprint(*self.code)

    def inputs_fingerprint(self, checkpoint_sha: str) -> str:
        """Code + data + the evaluated checkpoint (`checkpoint_fingerprint`)."""
        return fingerprint(self.code_version(), [_data_sha(Path(f)) for f in self.data], checkpoint_sha)

    @cached_property
    def asset(self) -> AssetsDefinition:
        return _evaluation_asset(self)


@cache
def _data_sha(path: Path) -> str:
    return file_sha256(path)


def _evaluation_asset(entry: Evaluation) -> AssetsDefinition:
    config_type = get_type_hints(entry.measure)["config"]

    @asset(name=entry.name, group_name="evaluation", partitions_def=checkpoint_partitions, pool="gpu",
           code_version=entry.code_version(), deps=list(entry.deps), required_resource_keys={"storage", *entry.resources},
           output_required=False, description=inspect.getdoc(entry.measure))
    def evaluate(context: AssetExecutionContext, config: config_type):
        storage = context.resources.storage
        measured = entry.measure(context, config, storage)
        if measured is not None:
            path = save_result(storage, context.partition_key, entry, measured.result)
            yield MaterializeResult(metadata={**measured.metadata, "result": MetadataValue.path(str(path))})

    return evaluate
