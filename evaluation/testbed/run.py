"""The synthetic-biography testbed in one command (`make synthetic`,
`python -m evaluation.testbed.run`): build the world's corpus, label it, tokenize it,
derive the judge labels from the knowledge base, train the reference model (the trained
cascade partner) and every method, evaluate them exactly and write the comparison report,
all under its own root (`artifacts/synthetic/`).

A plain driver rather than the Dagster assets: the Definitions fix the storage root, the
shard partitions and the preset when they are imported (`LACY_PRESET`,
`LACY_NUM_SHARDS`), so a second world beside the default would need every CLI call to
carry the same environment and run config, and each training run would pay torchrun's
and Pipes' start-up; the testbed's evaluation (exact scorers, oracle partner) is
not one of the per-checkpoint assets either. The driver calls the same library functions
the assets call, stage by stage, and skips a stage whose output is complete (a manifest,
or a finished run), so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from evaluation.backends.transformers_backend import TransformersBackend
from evaluation.checkpoint import load_checkpoint
from evaluation.measures.validation import ValidationConfig, evaluate_validation
from evaluation.testbed.exact import KnowledgeBase, SyntheticEvalConfig, evaluate_synthetic
from evaluation.testbed.oracle import OraclePartner
from evaluation.testbed.report import write_report
from pipelines.biographies import KB_DIR, SyntheticConfig, write_beside_corpus
from pipelines.corpus import CorpusConfig, read_corpus_shard, write_corpus
from pipelines.facts import LabelerConfig
from pipelines.files import read_json, write_json
from pipelines.judge import build_judge_labels
from pipelines.presets import DATA_PRESETS
from pipelines.shards import MANIFEST
from pipelines.token_shards import build_token_shards
from pipelines.tokenizer import MODEL_FILE, TokenizerConfig, train_tokenizer
from pipelines.word_labels import label_shards
from trainer.checkpoint import latest_checkpoint
from trainer.masks import get_method
from trainer.presets import REFERENCE
from trainer.score import score_dataset
from trainer.train import TrainConfig, train

METHODS = ("baseline", "lacy", "loss_based", "rho1", "llm_judge")
DEFAULT_WORLD = SyntheticConfig(people=500, head_people=25, head_documents=30)


@dataclass(frozen=True)
class TestbedConfig:
    root: str = "artifacts/synthetic"
    source: str = DEFAULT_WORLD.source()
    preset: str = "synthetic"  # trainer.presets
    vocab_size: int = DATA_PRESETS["synthetic"].vocab_size
    num_shards: int = DATA_PRESETS["synthetic"].num_shards
    methods: tuple[str, ...] = METHODS
    max_steps: int | None = None  # every run's steps (a quick check); None: the preset's
    workers: int = 2  # spaCy labeling processes
    threads: int = 2  # torch threads for training and evaluation
    evaluation: SyntheticEvalConfig = SyntheticEvalConfig(people_per_bucket=25, leakage_people_per_bucket=20, call_documents=80)
    validation: ValidationConfig = field(default_factory=lambda: ValidationConfig(max_tokens=20_000))


class Testbed:
    def __init__(self, config: TestbedConfig, log: Callable[[str], None] = print):
        self.config = config
        self.root = Path(config.root).resolve()
        self.log = log
        self.seconds: dict[str, float] = {}

    def path(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)

    def stage(self, name: str, done: bool, fn: Callable[[], object]) -> None:
        if done:
            self.log(f"[synthetic] {name}: complete, skipped")
            return
        t0 = time.perf_counter()
        fn()
        self.seconds[name] = round(time.perf_counter() - t0, 1)
        self.log(f"[synthetic] {name}: {self.seconds[name]} s")

    # ---------------------------------------------------------------- data

    def corpus(self) -> None:
        corpus_config = CorpusConfig((self.config.source,))
        write_corpus(corpus_config, self.path("corpus"), self.config.num_shards, self.log)
        write_beside_corpus([self.config.source], self.path("corpus"), corpus_config.validation_fraction)

    def tokenizer(self) -> None:
        shards = read_json(self.path("corpus", MANIFEST))["num_shards"]
        texts = (t for k in range(shards) for t, s in zip(*read_corpus_shard(self.path("corpus"), k, ["text", "split"]).to_pydict().values())
                 if s == "train")
        train_tokenizer(texts, self.path("tokenizer"), TokenizerConfig(vocab_size=self.config.vocab_size))

    def data(self) -> None:
        manifest = self.path("corpus", MANIFEST)
        if manifest.exists() and read_json(manifest)["config"]["sources"] != [self.config.source]:
            raise ValueError(f"{manifest}: built from another source; use another --root for {self.config.source}")
        shards = self.config.num_shards
        self.stage("corpus", manifest.exists(), self.corpus)
        labels = self.path("spacy_word_labels")
        self.stage("spacy_word_labels", all((labels / f"shard-{k:04d}.parquet").exists() for k in range(shards)),
                   lambda: label_shards(self.path("corpus"), range(shards), labels, LabelerConfig(), self.config.workers, self.log))
        self.stage("tokenizer", self.path("tokenizer", MODEL_FILE).exists(), self.tokenizer)
        self.stage("token_shards", self.path("token_shards", MANIFEST).exists(),
                   lambda: build_token_shards(self.path("corpus"), labels, self.path("tokenizer", MODEL_FILE), self.path("token_shards"), self.log))
        self.stage("lmlm_judge_labels", self.path("lmlm_judge_labels", MANIFEST).exists(),
                   lambda: build_judge_labels(self.path("corpus"), self.path("token_shards"), self.path("lmlm_judge_labels"), self.config.source, self.log))

    # ---------------------------------------------------------------- models

    def run_dir(self, name: str) -> Path:
        return self.path("models", name)

    def trained(self, name: str) -> bool:
        ckpt = latest_checkpoint(self.run_dir(name))
        return ckpt is not None and ckpt.step >= ckpt.info["run"]["steps"]

    def train(self, name: str) -> None:
        needs = get_method(name).needs
        needs_judge, needs_ref = needs.judge, needs.ref_loss
        cfg = TrainConfig(method=name, data=(str(self.path("token_shards")),), out=str(self.run_dir(name)), preset=self.config.preset,
                          judge=(str(self.path("lmlm_judge_labels")),) if needs_judge else (),
                          ref_losses=(str(self.path("reference_losses")),) if needs_ref else (), max_steps=self.config.max_steps)
        self.stage(f"train {name}", self.trained(name), lambda: train(cfg, log=self.log))

    def checkpoint(self, name: str) -> Path:
        return latest_checkpoint(self.run_dir(name)).path

    def models(self) -> None:
        self.train(REFERENCE)
        if "rho1" in self.config.methods:
            self.stage("reference_losses", self.path("reference_losses", MANIFEST).exists(),
                       lambda: score_dataset(self.checkpoint(REFERENCE), self.path("token_shards"), self.path("reference_losses"), log=self.log))
        for method in self.config.methods:
            self.train(method)

    # ---------------------------------------------------------------- evaluation

    def evaluate(self) -> dict[str, dict]:
        kb = KnowledgeBase.load(self.path("corpus", KB_DIR))
        reference = self.checkpoint(REFERENCE)
        partners = {"knowledge_base": OraclePartner(kb, load_checkpoint(reference).tokenizer),
                    "reference": TransformersBackend(reference)}
        baseline = load_checkpoint(self.checkpoint("baseline")) if "baseline" in self.config.methods else None
        results = {}
        for name in (REFERENCE, *self.config.methods):
            out = self.path("evaluation", f"{name}.json")
            ckpt_path = self.checkpoint(name)
            if out.exists() and read_json(out)["checkpoint"]["path"] == str(ckpt_path):
                results[name] = read_json(out)
                continue
            t0 = time.perf_counter()
            model = load_checkpoint(ckpt_path)
            own = {k: v for k, v in partners.items() if not (name == REFERENCE and k == "reference")}
            result = evaluate_synthetic(model, kb, own, self.config.evaluation, self.log)
            result["validation"] = evaluate_validation(model, self.path("token_shards"), baseline if name != "baseline" else None,
                                                       self.config.validation, self.log)
            self.seconds[f"evaluate {name}"] = round(time.perf_counter() - t0, 1)
            write_json(out, result)
            results[name] = result
        return results

    def run(self) -> Path:
        torch.set_num_threads(self.config.threads)
        torch.set_flush_denormal(True)
        t0 = time.perf_counter()
        self.data()
        self.models()
        results = self.evaluate()
        self.seconds["total"] = round(time.perf_counter() - t0, 1)
        timings = self.path("timings.json")
        previous = read_json(timings) if timings.exists() else {}
        write_json(timings, {**previous, **self.seconds})
        report = write_report(results, self.path("report"), self.describe(), self.log)
        self.log(f"[synthetic] report: {report}")
        return report

    def describe(self) -> dict:
        """What the report states about the setup."""
        kb = read_json(self.path("corpus", KB_DIR, "structure.json"))
        tokens = read_json(self.path("token_shards", MANIFEST))
        ref = latest_checkpoint(self.run_dir(REFERENCE)).info
        return {"source": self.config.source, "buckets": kb["buckets"], "tokens": tokens.get("tokens_per_split"),
                "fact_fraction": tokens.get("fact_fraction"), "preset": self.config.preset, "num_params": ref["num_params"],
                "steps": {n: latest_checkpoint(self.run_dir(n)).step for n in (REFERENCE, *self.config.methods)},
                "seconds": read_json(self.path("timings.json")), "config": json.loads(json.dumps(asdict(self.config), default=str))}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=TestbedConfig.root)
    parser.add_argument("--source", default=TestbedConfig.source, help="embedded:synthetic-bios?people=..&head_people=..")
    parser.add_argument("--preset", default=TestbedConfig.preset)
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--vocab-size", type=int, default=TestbedConfig.vocab_size)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--threads", type=int, default=TestbedConfig.threads)
    parser.add_argument("--people-per-bucket", type=int, default=TestbedConfig.evaluation.people_per_bucket)
    args = parser.parse_args(argv)
    config = TestbedConfig(root=args.root, source=args.source, preset=args.preset, methods=tuple(args.methods),
                           vocab_size=args.vocab_size, max_steps=args.max_steps, threads=args.threads,
                           evaluation=replace(TestbedConfig.evaluation, people_per_bucket=args.people_per_bucket))
    Testbed(config).run()


if __name__ == "__main__":
    main()
