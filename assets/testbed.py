"""The synthetic-biography testbed (docs/synthetic.md) as assets of group `testbed`, each
partitioned by cell: a scenario (`evaluation.testbed.cell.SCENARIOS`: a world, a training
length) at a seed (the world's, the models' initialization and data order).

The stages are the pipeline's own functions: the world's corpus and knowledge base (and the
partner's extra reading), spaCy labels, the tokenizer, token shards (with the token kinds, R and
the training probe), the LLM-judge labels from the knowledge base, the reference model (Rho-1's
reference and the cascade's trained partner), its losses, and every method of Table 5, trained
through the Pipes client like the main models (live metrics in the UI); then the exact evaluation
of every model of the cell, and per scenario the report with intervals over seeds
(`testbed_report`); `testbed_sweep_report` sets the scenarios side by side.

A stage whose output is current is kept (`evaluation.testbed.cell`: fingerprints of the code,
the config and the inputs), so materializing again resumes where a killed run stopped and redoes
only what changed. The steps of a cell run two at a time (the run's executor), one CPU thread each.
"""


import multiprocessing
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

from dagster import (
    AssetDep,
    AssetExecutionContext,
    AssetsDefinition,
    MaterializeResult,
    MetadataValue,
    MultiPartitionsDefinition,
    MultiToSingleDimensionPartitionMapping,
    StaticPartitionsDefinition,
    asset,
)

from assets.metadata import md_png, md_table
from assets.resources import LacyStorage
from assets.training import TRAINER_CODE, TRAINING_RETRIES, Pipes, observing
from evaluation.checkpoint import checkpoint_fingerprint
from evaluation.report import testbed as testbed_report_lib
from evaluation.report.figures import save_figure
from evaluation.testbed import evaluate as testbed_evaluate
from evaluation.testbed import kinds as testbed_kinds
from evaluation.testbed.cell import MODELS, SCENARIOS, SEEDS, Cell, cells_of, is_fresh, mark_fresh, scenario_root
from evaluation.testbed.exact import KnowledgeBase
from evaluation.testbed.kinds import measure_regime, probe_documents
from pipelines import biographies, corpus, facts, judge, token_shards, tokenizer, word_labels
from pipelines.biographies import EXTRA_SOURCE, KB_DIR, write_beside_corpus
from pipelines.corpus import CorpusConfig, read_corpus_shard, write_corpus
from pipelines.facts import LabelerConfig
from pipelines.files import code_fingerprint, fingerprint, iter_jsonl, read_json, write_json
from pipelines.judge import build_judge_labels
from pipelines.presets import DATA_PRESETS
from pipelines.shards import MANIFEST
from pipelines.token_shards import build_token_shards
from pipelines.tokenizer import MODEL_FILE, TokenizerConfig, train_tokenizer
from pipelines.word_labels import label_shards
from trainer.argv import train_argv
from trainer.checkpoint import latest_checkpoint
from trainer.masks import METHODS, get_method
from trainer.presets import REFERENCE
from trainer.probe import write_probe
from trainer.score import score_dataset
from trainer.train import METRICS_FILE, TrainConfig

testbed_cells = MultiPartitionsDefinition({"scenario": StaticPartitionsDefinition(list(SCENARIOS)),
                                           "seed": StaticPartitionsDefinition(list(SEEDS))})
testbed_scenarios = StaticPartitionsDefinition(list(SCENARIOS))
WORLD_DATA = DATA_PRESETS["synthetic"]
THREADS = {"OMP_NUM_THREADS": "1"}  # two steps of a cell run side by side on the 2 cores


def cell_of(context: AssetExecutionContext, storage: LacyStorage) -> Cell:
    keys = context.partition_key.keys_by_dimension
    return Cell.of(storage.path(), keys["scenario"], keys["seed"])


def stage(context: AssetExecutionContext, folder: Path, stage_fp: str, build: Callable[[], object]) -> None:
    """Build `folder` unless it is current (made with fingerprint `stage_fp`)."""
    if is_fresh(folder, stage_fp):
        context.log.info(f"{folder}: current (fingerprint {stage_fp}), kept")
        return
    build()
    mark_fresh(folder, stage_fp)


def manifest_fp(folder: Path) -> str:
    return read_json(folder / MANIFEST)["fingerprint"]


def cell_asset(priority: int = 0, **kwargs):
    """A testbed asset partitioned by cell; `priority`: steps on the cell's critical path (the
    reference model, then what waits on its losses) start first when two are ready."""
    return asset(group_name="testbed", partitions_def=testbed_cells, op_tags={"dagster/priority": str(priority)}, **kwargs)


# ---------------------------------------------------------------- data


@cell_asset(code_version=code_fingerprint(corpus, biographies))
def testbed_corpus(context: AssetExecutionContext, storage: LacyStorage) -> MaterializeResult:
    """The world's corpus (90/10 split by doc_id) and knowledge base, and the extra corpus only
    the partner reads (each person's record and more biographies)."""
    cell = cell_of(context, storage)
    source = cell.world.source()

    def build() -> None:
        write_corpus(CorpusConfig((source,)), cell.path("corpus"), WORLD_DATA.num_shards, context.log.info)
        write_beside_corpus([source], cell.path("corpus"))
        write_corpus(CorpusConfig((cell.world.source(EXTRA_SOURCE),)), cell.path("extra_corpus"), WORLD_DATA.num_shards,
                     context.log.info)

    stage(context, cell.path("corpus"), fingerprint(code_fingerprint(corpus, biographies), source), build)
    structure = read_json(cell.path("corpus", KB_DIR, "structure.json"))
    manifests = {name: read_json(cell.path(name, MANIFEST)) for name in ("corpus", "extra_corpus")}
    return MaterializeResult(metadata={
        "world": source,
        "people_by_bucket": MetadataValue.json(structure["buckets"]),
        "documents": MetadataValue.json(manifests["corpus"]["splits"]),
        "extra_documents": manifests["extra_corpus"]["documents"],
        "path": MetadataValue.path(str(cell.root)),
    })


@cell_asset(deps=[testbed_corpus], code_version=code_fingerprint(facts, word_labels))
def testbed_word_labels(context: AssetExecutionContext, storage: LacyStorage) -> MaterializeResult:
    """spaCy's A.2.1 labels of every word of the corpus (2 worker processes)."""
    cell = cell_of(context, storage)
    shards = range(WORLD_DATA.num_shards)
    stage(context, cell.path("spacy_word_labels"),
          fingerprint(code_fingerprint(facts, word_labels), manifest_fp(cell.path("corpus"))),
          lambda: label_shards(cell.path("corpus"), shards, cell.path("spacy_word_labels"), LabelerConfig(), workers=2,
                               log=context.log.info))
    return MaterializeResult(metadata={"shards": len(shards)})


@cell_asset(deps=[testbed_corpus], code_version=code_fingerprint(tokenizer))
def testbed_tokenizer(context: AssetExecutionContext, storage: LacyStorage) -> MaterializeResult:
    """SentencePiece BPE on the corpus' train split, `<CALL>` as the last id."""
    cell = cell_of(context, storage)
    config = TokenizerConfig(vocab_size=cell.scenario.vocab_size)

    def texts():
        for k in range(WORLD_DATA.num_shards):
            part = read_corpus_shard(cell.path("corpus"), k, ["text", "split"]).to_pydict()
            yield from (t for t, s in zip(part["text"], part["split"]) if s == "train")

    stage(context, cell.path("tokenizer"), fingerprint(code_fingerprint(tokenizer), manifest_fp(cell.path("corpus")), asdict(config)),
          lambda: train_tokenizer(texts(), cell.path("tokenizer"), config))
    return MaterializeResult(metadata={"vocab_size": config.vocab_size})


@cell_asset(deps=[testbed_word_labels, testbed_tokenizer], code_version=code_fingerprint(token_shards, testbed_kinds))
def testbed_token_shards(context: AssetExecutionContext, storage: LacyStorage) -> MaterializeResult:
    """Token shards of the corpus (with spaCy classes) and of the extra corpus (unlabeled); the
    token kinds and the regime ratio R of the train split (`evaluation.testbed.kinds`); the
    probe file the methods' training reads (`trainer.probe`)."""
    cell = cell_of(context, storage)
    tok = cell.path("tokenizer", MODEL_FILE)
    inputs_fp = fingerprint(code_fingerprint(token_shards, testbed_kinds), manifest_fp(cell.path("corpus")),
                            read_json(cell.path("tokenizer", "stage.json"))["fingerprint"],
                            read_json(cell.path("spacy_word_labels", "stage.json"))["fingerprint"])

    def build() -> None:
        build_token_shards(cell.path("corpus"), cell.path("spacy_word_labels"), tok, cell.path("token_shards"), context.log.info)
        build_token_shards(cell.path("extra_corpus"), None, tok, cell.path("extra_token_shards"), context.log.info)
        kb = KnowledgeBase.load(cell.path("corpus", KB_DIR))
        write_json(cell.path("regime.json"), measure_regime(cell.path("token_shards"), kb))
        write_probe(cell.path("probe.parquet"), *probe_documents(cell.path("token_shards"), kb))

    stage(context, cell.path("token_shards"), inputs_fp, build)
    regime = read_json(cell.path("regime.json"))
    return MaterializeResult(metadata={
        "R": round(regime["R"], 3),
        "R_values": round(regime["R_values"], 3),
        "fact_fraction": round(regime["fact_fraction"], 4),
        "train_tokens": regime["tokens"],
        "kinds": md_table([{"kind": k, "share of tokens": regime["share"][k], "labelled fact": regime["fact_labelled"][k]}
                           for k in regime["share"]]),
    })


@cell_asset(deps=[testbed_token_shards], code_version=code_fingerprint(judge, biographies))
def testbed_judge_labels(context: AssetExecutionContext, storage: LacyStorage) -> MaterializeResult:
    """LLM-judge `<CALL>` labels from the knowledge base: every attribute value (A.2.2)."""
    cell = cell_of(context, storage)
    stage(context, cell.path("lmlm_judge_labels"),
          fingerprint(code_fingerprint(judge, biographies), manifest_fp(cell.path("token_shards"))),
          lambda: build_judge_labels(cell.path("corpus"), cell.path("token_shards"), cell.path("lmlm_judge_labels"),
                                     cell.world.source(), context.log.info))
    manifest = read_json(cell.path("lmlm_judge_labels", MANIFEST))
    return MaterializeResult(metadata={"judge_call_fraction": round(manifest["judge_call_fraction"], 4), "placed": manifest["placed"],
                                       "agreement_with_spacy_facts": MetadataValue.json(manifest["agreement_with_spacy_facts"])})


# ---------------------------------------------------------------- models


def run_dir(cell: Cell, name: str) -> Path:
    """The run directory of model `name` of the cell, named by what its training depends on."""
    needs = get_method(name).needs
    inputs = [manifest_fp(cell.path("token_shards"))]
    inputs += [manifest_fp(cell.path("extra_token_shards"))] if name == REFERENCE else []
    inputs += [manifest_fp(cell.path("lmlm_judge_labels"))] if needs.judge else []
    inputs += [manifest_fp(cell.path("reference_losses"))] if needs.ref_loss else []
    inputs += [read_json(cell.path("token_shards", "stage.json"))["fingerprint"]] if name != REFERENCE else []  # the probe
    fp = fingerprint(name, cell.scenario.preset, cell.scenario.steps_of(name), cell.seed, inputs, TRAINER_CODE)
    return cell.path("models", name, f"run-{fp}")


def trained(cell: Cell, name: str) -> Path | None:
    """The final checkpoint of model `name` when its current run is complete."""
    ckpt = latest_checkpoint(run_dir(cell, name))
    return ckpt.path if ckpt is not None and ckpt.step == cell.scenario.steps_of(name) else None


def train_config(cell: Cell, name: str, storage_root: Path) -> TrainConfig:
    """The trainer's config of model `name` of the cell: the scenario's steps, the cell's seed,
    the partner's extra reading for the reference, the probe for every method."""
    needs = get_method(name).needs
    return TrainConfig(
        method=name, preset=cell.scenario.preset, out=str(run_dir(cell, name)), seed=cell.seed, max_steps=cell.scenario.steps_of(name),
        root=str(storage_root), data=(str(cell.path("token_shards")), *([str(cell.path("extra_token_shards"))] if name == REFERENCE else [])),
        judge=(str(cell.path("lmlm_judge_labels")),) if needs.judge else (),
        ref_losses=(str(cell.path("reference_losses")),) if needs.ref_loss else (),
        probe=None if name == REFERENCE else str(cell.path("probe.parquet")))


def train_in_cell(context: AssetExecutionContext, storage: LacyStorage, pipes: Pipes, name: str) -> MaterializeResult:
    cell = cell_of(context, storage)
    out = run_dir(cell, name)
    final, reported = trained(cell, name), {}
    if final is None:
        command = [sys.executable, "-m", "assets.pipes_train", *train_argv(train_config(cell, name, storage.path()))]  # one process
        context.log.info(" ".join(command))
        with observing(context, out / METRICS_FILE):
            reported = pipes.run(command=command, context=context, env=THREADS).get_materialize_result().metadata or {}
        final = trained(cell, name)
    else:
        context.log.info(f"{final}: complete, kept")
    metrics = [row for _, row in iter_jsonl(out / METRICS_FILE)]
    last = metrics[-1] if metrics else {}
    return MaterializeResult(metadata={
        **reported,
        "checkpoint": MetadataValue.path(str(final)),
        "steps": cell.scenario.steps_of(name),
        **{k: round(last[k], 4) for k in ("loss", "call_fraction", "non_call_loss") if last.get(k) is not None},
        "seconds": round(last.get("elapsed_s", 0.0), 1),
    })


@cell_asset(priority=2, deps=[testbed_token_shards], code_version=TRAINER_CODE, retry_policy=TRAINING_RETRIES)
def testbed_reference_model(context: AssetExecutionContext, storage: LacyStorage, pipes_subprocess_client: Pipes) -> MaterializeResult:
    """The reference model: twice the small models' layers, trained longer, on the corpus and the
    extra reading; Rho-1's and spaCy + Refloss' reference, and the cascade's trained partner."""
    return train_in_cell(context, storage, pipes_subprocess_client, REFERENCE)


@cell_asset(priority=1, deps=[testbed_reference_model], code_version=TRAINER_CODE)
def testbed_reference_losses(context: AssetExecutionContext, storage: LacyStorage) -> MaterializeResult:
    """The reference model's loss on every train token (Rho-1, spaCy + Refloss)."""
    cell = cell_of(context, storage)
    reference = trained(cell, REFERENCE)
    if reference is None:
        raise FileNotFoundError(f"{run_dir(cell, REFERENCE)}: the reference model is not trained (materialize testbed_reference_model)")
    stage(context, cell.path("reference_losses"), fingerprint(checkpoint_fingerprint(reference), manifest_fp(cell.path("token_shards"))),
          lambda: score_dataset(reference, cell.path("token_shards"), cell.path("reference_losses"), log=context.log.info))
    return MaterializeResult(metadata={"mean_loss": round(read_json(cell.path("reference_losses", MANIFEST))["mean_loss"], 4)})


def testbed_model(method: str) -> AssetsDefinition:
    needs = METHODS[method].needs
    deps = [testbed_token_shards] + ([testbed_judge_labels] if needs.judge else []) + ([testbed_reference_losses] if needs.ref_loss else [])

    @cell_asset(priority=int(needs.ref_loss), name=f"testbed_{method}_model", deps=deps, code_version=TRAINER_CODE,
                retry_policy=TRAINING_RETRIES,
                description=f"The `{method}` method of Table 5 in the testbed cell, with the training probe.")
    def _model(context: AssetExecutionContext, storage: LacyStorage, pipes_subprocess_client: Pipes) -> MaterializeResult:
        return train_in_cell(context, storage, pipes_subprocess_client, method)

    return _model


TESTBED_MODELS = [testbed_model(m) for m in METHODS]


# ---------------------------------------------------------------- evaluation and reports


def _evaluate_one(cell: Cell, name: str, checkpoint: str, partner: str, baseline: str | None, inputs_fp: str) -> str:
    """One model's evaluation in a worker process (one thread); returns its result file."""
    import torch

    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    result = testbed_evaluate.evaluate_model(cell, name, Path(checkpoint), Path(partner), Path(baseline) if baseline else None,
                                             log=lambda _m: None)
    path = cell.evaluation_file(name)
    write_json(path, {**result, "inputs_fingerprint": inputs_fp, "scenario": cell.scenario.name, "seed": cell.seed})
    return str(path)


@cell_asset(deps=[testbed_reference_model, *TESTBED_MODELS], code_version=testbed_evaluate.CODE)
def testbed_evaluation(context: AssetExecutionContext, storage: LacyStorage) -> MaterializeResult:
    """Every model of the cell evaluated exactly (`evaluation.testbed.evaluate`), two at a time;
    a model whose result is current (code, config, world and weights unchanged) is kept."""
    cell = cell_of(context, storage)
    checkpoints = {name: trained(cell, name) for name in MODELS}
    missing = [n for n, c in checkpoints.items() if c is None]
    if missing:
        raise FileNotFoundError(f"{cell.root}: not trained yet: {', '.join(missing)} (materialize their testbed_*_model assets)")
    sha = {name: checkpoint_fingerprint(c) for name, c in checkpoints.items()}
    todo = {}
    for name, ckpt in checkpoints.items():
        fp = testbed_evaluate.inputs_fingerprint(cell, sha[name], sha[REFERENCE], None if name == "baseline" else sha["baseline"])
        path = cell.evaluation_file(name)
        if path.exists() and read_json(path).get("inputs_fingerprint") == fp:
            context.log.info(f"{path}: current, kept")
            continue
        todo[name] = fp
    context.log.info(f"evaluating {len(todo)} of {len(checkpoints)} models: {', '.join(todo) or 'none'}")
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        jobs = {name: pool.submit(_evaluate_one, cell, name, str(checkpoints[name]), str(checkpoints[REFERENCE]),
                                  None if name == "baseline" else str(checkpoints["baseline"]), fp) for name, fp in todo.items()}
        for name, job in jobs.items():
            context.log.info(f"{name}: {job.result()}")
    results = {name: read_json(cell.evaluation_file(name)) for name in MODELS}
    return MaterializeResult(metadata={
        "models": md_table(testbed_report_lib.cell_rows(results)),
        "probe": md_png(save_figure(testbed_report_lib.probe_figure(results), cell.path("evaluation", "probe.png"))),
    })


@asset(group_name="testbed", partitions_def=testbed_scenarios, code_version=code_fingerprint(testbed_report_lib),
       deps=[AssetDep(testbed_evaluation, partition_mapping=MultiToSingleDimensionPartitionMapping(partition_dimension_name="scenario"))])
def testbed_report(context: AssetExecutionContext, storage: LacyStorage) -> MaterializeResult:
    """The scenario's report over its evaluated seeds: every number a mean with a 95% interval,
    the paper's claims worded by the intervals of the differences (`evaluation.report.testbed`)."""
    scenario = context.partition_key
    cells = cells_of(storage.path(), scenario)
    if not cells:
        raise FileNotFoundError(f"{scenario_root(storage.path(), scenario)}: no evaluated cell (materialize testbed_evaluation)")
    report = testbed_report_lib.write_report(cells, scenario_root(storage.path(), scenario) / "report", context.log.info)
    return MaterializeResult(metadata={"seeds": len(cells), "report": MetadataValue.md(report.read_text()),
                                       "path": MetadataValue.path(str(report))})


@asset(group_name="testbed", deps=[testbed_report], code_version=code_fingerprint(testbed_report_lib))
def testbed_sweep_report(context: AssetExecutionContext, storage: LacyStorage) -> MaterializeResult:
    """The scenarios side by side: LaCy's precision gap to the baseline with each partner, and
    the tail-leakage gap, with intervals, against the training length and the world's size."""
    report = testbed_report_lib.write_sweep_report(storage.path(), storage.path("testbed", "sweep"), context.log.info)
    return MaterializeResult(metadata={"report": MetadataValue.md(report.read_text()), "path": MetadataValue.path(str(report))})


TESTBED_ASSETS = [testbed_corpus, testbed_word_labels, testbed_tokenizer, testbed_token_shards, testbed_judge_labels,
                  testbed_reference_model, testbed_reference_losses, *TESTBED_MODELS, testbed_evaluation, testbed_report,
                  testbed_sweep_report]

