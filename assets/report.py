"""`comparison_report`: the paper's comparisons over every method's latest model, built by
`evaluation.report.comparison` from the result files of every evaluation of the registry
(each entry's section, in the registry's order, then Table 2's costs). The asset reads the
results, calls the builder, and shows the tables and figures as metadata; the report lies
under artifacts/report/."""

from collections.abc import Sequence
from pathlib import Path

from dagster import AssetExecutionContext, AssetsDefinition, MaterializeResult, MetadataValue, asset

from assets.metadata import md_png, md_table
from assets.models import LATEST, latest_run
from assets.registry import Evaluation
from assets.resources import LacyStorage
from assets.results import checkpoint_dir, read_result
from evaluation.report.comparison import code_commit, cost_section, provenance, write_comparison_report
from pipelines.files import read_json
from trainer.checkpoint import latest_checkpoint
from trainer.masks import METHODS


def collect(storage: LacyStorage, names: Sequence[str]) -> dict[str, dict]:
    """label -> {"method", "call_objective", "checkpoint", "partition", the result of each
    evaluation of `names` or None}: every method's latest model, and beside a calling method's
    the newest run trained with another call objective (e.g. a `renormalized` LaCy run
    started with `python -m trainer`), labelled with that objective."""
    root = storage.path("models")
    rows = {}
    for method, spec in METHODS.items():
        if not (root / method / LATEST).exists():
            continue
        latest = latest_checkpoint(Path(latest_run(storage, method)["run_dir"]))
        models = {spec.label: latest}
        if spec.calls:
            runs = sorted((c for c in map(latest_checkpoint, (root / method).glob("run-*")) if c), key=lambda c: c.path.stat().st_mtime)
            for other in runs:  # the newest run of each objective wins
                objective = other.info.get("call_objective")
                if objective != latest.info.get("call_objective"):
                    models[f"{spec.label} ({objective})"] = other
        for label, checkpoint in models.items():
            key = str(checkpoint.path.relative_to(root))
            rows[label] = {"method": method, "call_objective": checkpoint.info.get("call_objective"),
                           "checkpoint": str(checkpoint.path), "partition": key,
                           **{name: read_result(storage, key, name) for name in names}}
    return rows


def _optional_json(path: Path) -> dict | None:
    return read_json(path) if path.exists() else None


def report_asset(evaluations: Sequence[Evaluation]) -> AssetsDefinition:
    """`comparison_report` over `evaluations`: it depends on each, shows each section."""
    names = [e.name for e in evaluations]

    @asset(name="comparison_report", group_name="evaluation", deps=[e.asset for e in evaluations])
    def comparison_report(context: AssetExecutionContext, storage: LacyStorage) -> MaterializeResult:
        """The paper's comparisons over every method's latest model: Figures 2/6 and 5, the call
        decision and realized call rates, Tables 1 and 2, and the sections of the other
        evaluations (Figure 3: acceptability)."""
        rows = collect(storage, names)
        manifest = _optional_json(storage.path("token_shards", "manifest.json"))
        header = provenance(code_commit(), manifest["fingerprint"] if manifest else "no token shards")
        cost = cost_section(_optional_json(storage.path("bench", "labeling.json")),
                            _optional_json(storage.path("reference_losses", "manifest.json")))
        report = write_comparison_report(rows, [e.section for e in evaluations if e.section], [cost], names,
                                         storage.path("report"), header)
        for line in report.missing:
            context.log.warning(f"not evaluated yet: {line}")
        sections = report.sections
        return MaterializeResult(
            metadata={
                "methods": len(rows),
                **{key: md_png(f) if isinstance(f, Path) else f for s in sections for key, f in s.figures.items()},
                **{key: md_table(t) if isinstance(t, list) else t for s in sections for key, t in s.tables.items()},
                "report": MetadataValue.path(str(report.path)),
                "checkpoints": MetadataValue.json({m: str(checkpoint_dir(storage, r["partition"])) for m, r in rows.items()}),
            }
        )

    return comparison_report
