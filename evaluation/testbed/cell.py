"""The testbed's scenarios and cells. A scenario is a world (`pipelines.biographies`
without its seed), a training length and the evaluation's sizes; a cell is a scenario at one
seed, which seeds both the world and the models' initialization and data order. The Dagster
assets of the testbed are partitioned by cell (`assets/testbed.py`); a cell's artifacts lie
under `<storage>/testbed/<scenario>/seed-<k>/`:

    corpus/ (+ knowledge_base/), extra_corpus/   the world's corpus, and the partner's extra reading
    spacy_word_labels/, tokenizer/, token_shards/, extra_token_shards/, lmlm_judge_labels/
    regime.json, probe.parquet                  token kinds and R; the training probe's documents
    models/<name>/run-<fingerprint>/            each model's run (the trainer's layout)
    reference_losses/
    evaluation/<name>.json                      each model's exact evaluation

Freshness: every stage writes `stage.json` into its folder with the fingerprint of what made
it (code, config, inputs' fingerprints); a stage whose folder holds a complete output with the
current fingerprint is not redone (`is_fresh`). A model's run directory is named by the
fingerprint of its training (method, preset, steps, seed, data, trainer code), so a run of other
steps or code never passes for it, and the trainer resumes a run killed half-way.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from pipelines.biographies import SyntheticConfig
from pipelines.files import read_json, write_json
from pipelines.presets import DATA_PRESETS
from trainer.masks import METHODS
from trainer.presets import REFERENCE, get_preset

STAGE_FILE = "stage.json"
MODELS = (REFERENCE, *METHODS)  # the partner (the reference model) and every method of Table 5


@dataclass(frozen=True)
class EvalConfig:
    """How much of each cell the exact evaluation reads (`evaluation.testbed.evaluate`)."""

    head_people: int = 100  # biographies per bucket (every person when the bucket is smaller)
    tail_people: int = 100
    leakage_people: int = 40  # x 5 attributes = questions per bucket
    max_new_tokens: int = 96  # a biography of the world is about 60-90 tokens
    call_budget: float = 0.22  # the paper's equal call budget (section 5.1)
    repetition_penalty: float = 1.2
    call_documents: int = 80  # train documents per bucket for the call-decision table
    validation_tokens: int = 20_000  # the Figure 5 losses
    acceptability_documents: int = 112  # the paper's batch (section 3, A.1)


@dataclass(frozen=True)
class Scenario:
    name: str
    world: SyntheticConfig  # its seed is the cell's
    steps: float = 1.0  # every run's steps: the preset's (A.4.1 ratios included) times this
    preset: str = "synthetic"  # trainer.presets: the small models' and the partner's runs
    vocab_size: int = DATA_PRESETS["synthetic"].vocab_size  # SentencePiece pieces before <CALL>
    evaluation: EvalConfig = field(default_factory=EvalConfig)
    description: str = ""

    def steps_of(self, name: str) -> int:
        return max(1, round(get_preset(self.preset).run(name).steps * self.steps))

    def to_dict(self) -> dict:
        return {**asdict(self), "world": self.world.source()}


DEFAULT_WORLD = SyntheticConfig(people=1000, head_people=25, head_documents=30)
DEFAULT = Scenario("default", DEFAULT_WORLD, description="the world and training length of `make synthetic`")


def _sweep() -> dict[str, Scenario]:
    """`make synthetic-sweep`: three training lengths at the default world, three world sizes
    (the tail's share, hence R, grows with the people) at the default length."""
    out = {}
    for factor in (0.5, 2.0):
        out[f"steps-{factor:g}x"] = replace(DEFAULT, name=f"steps-{factor:g}x", steps=factor,
                                           description=f"the default world, every run {factor:g}x as long")
    for people in (500, 2000):
        out[f"people-{people}"] = replace(DEFAULT, name=f"people-{people}", world=replace(DEFAULT_WORLD, people=people),
                                          description=f"{people} people (the same head), the default length")
    return out


SMOKE = Scenario("smoke", SyntheticConfig(people=40, head_people=4, head_documents=6, extra_documents=1), preset="synthetic-smoke",
                 vocab_size=400, evaluation=EvalConfig(head_people=2, tail_people=2, leakage_people=1, max_new_tokens=8,
                                                       call_documents=2, validation_tokens=500, acceptability_documents=4),
                 description="a tiny world and smoke-sized models: the tests' end-to-end run")
SWEEP = {"default": DEFAULT, **_sweep()}  # `make synthetic-sweep`; the default is its middle
SCENARIOS: dict[str, Scenario] = {**SWEEP, "smoke": SMOKE}
SEEDS = tuple(str(k) for k in range(8))  # partition keys; `make synthetic` runs the first SYNTHETIC_SEEDS
SYNTHETIC_SEEDS = 3


@dataclass(frozen=True)
class Cell:
    scenario: Scenario
    seed: int
    root: Path  # <storage>/testbed/<scenario>/seed-<k>

    @classmethod
    def of(cls, storage_root: str | Path, scenario: str, seed: int | str) -> Cell:
        if scenario not in SCENARIOS:
            raise ValueError(f"unknown testbed scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")
        return cls(SCENARIOS[scenario], int(seed), Path(storage_root).resolve() / "testbed" / scenario / f"seed-{int(seed)}")

    @property
    def world(self) -> SyntheticConfig:
        return replace(self.scenario.world, seed=self.seed)

    def path(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)

    def evaluation_file(self, name: str) -> Path:
        return self.path("evaluation", f"{name}.json")


def scenario_root(storage_root: str | Path, scenario: str) -> Path:
    return Path(storage_root).resolve() / "testbed" / scenario


def cells_of(storage_root: str | Path, scenario: str) -> list[Cell]:
    """The cells of a scenario that have evaluations, by seed."""
    root = scenario_root(storage_root, scenario)
    seeds = sorted(int(p.name.removeprefix("seed-")) for p in root.glob("seed-*") if (p / "evaluation").is_dir())
    return [Cell.of(storage_root, scenario, s) for s in seeds]


def is_fresh(folder: Path, stage_fp: str) -> bool:
    """Whether `folder` holds a complete output made with fingerprint `stage_fp` (the stamp is
    written after the output)."""
    stamp = folder / STAGE_FILE
    return stamp.is_file() and read_json(stamp).get("fingerprint") == stage_fp


def mark_fresh(folder: Path, stage_fp: str, **info: object) -> None:
    write_json(folder / STAGE_FILE, {"fingerprint": stage_fp, **info})
