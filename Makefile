# lacy: `make run` installs and materializes lacy_model with everything upstream of it on
# the embedded Wikipedia sample; `make test` runs the tests.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := pyproject.toml requirements.lock assets/dagster_cli.pth evaluation/measures/lm_eval_model.pth
STAMP := $(VENV)/.installed-$(shell cat $(INSTALLED) | sha256sum | cut -c1-12)
LAST_SHARD = $(shell $(BIN)/python -c "from pipelines.presets import data_preset as p; print(f'{p().num_shards - 1:04d}')" 2>/dev/null)
# the repo root's instance (dagster.yaml here, storage under .dagster/) unless DAGSTER_HOME names another
INSTANCE = DAGSTER_HOME="$${DAGSTER_HOME:-$(CURDIR)}"
# a stage of assets/jobs.py; `dagster job execute` takes a partition as run tags only
JOB := $(INSTANCE) $(BIN)/dagster job execute -m assets.definitions -j
SHARD_RANGE = --tags '{"dagster/asset_partition_range_start": "0000", "dagster/asset_partition_range_end": "$(LAST_SHARD)"}'
RECOVER := $(INSTANCE) $(BIN)/python -m assets.recover  # frees the pool slots of runs killed earlier
# the synthetic testbed's assets of one cell ("<scenario>|<seed>"), and the seeds `make synthetic` runs
ASSETS := $(INSTANCE) $(BIN)/dagster asset materialize -m assets.definitions --select
# steps forked from one process that has imported the code location (each step would import it again: seconds)
FORKSERVER := --config-json '{"execution": {"config": {"multiprocess": {"max_concurrent": 2, "start_method": {"forkserver": {"preload_modules": ["assets.definitions"]}}}}}}'
CELL := '*testbed_evaluation'
SYNTHETIC_SEEDS ?= 3
SWEEP = $(shell $(BIN)/python -c "from evaluation.testbed.cell import SWEEP; print(' '.join(SWEEP))" 2>/dev/null)

.PHONY: install run models evaluate results test test-slow test-deploy lint bench dev clean synthetic synthetic-sweep

install: $(STAMP)

$(STAMP): $(INSTALLED)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -c requirements.lock --config-settings editable_mode=compat -e '.[dev]'
	@# `lm_eval --model lacy ...` (lm-eval 0.4.13 reads no plugins; see evaluation/measures/lm_eval_model.py)
	cp evaluation/measures/lm_eval_model.pth "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/lacy_lm_eval_model.pth"
	@# `dagster asset materialize --select X` in the repo root without -m (the asset commands read no [tool.dagster])
	cp assets/dagster_cli.pth "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/lacy_dagster_cli.pth"
	rm -f $(VENV)/.installed-* && touch $@

run: $(STAMP)
	$(RECOVER)
	$(JOB) corpus_job
	$(JOB) shards_job $(SHARD_RANGE)
	$(JOB) lacy_job

models: $(STAMP)  # the reference model, every method of Table 5, LaCy under A.4 as printed (36 min on 2 cores)
	$(RECOVER)
	$(JOB) reference_job
	$(JOB) reference_losses_job
	$(JOB) methods_job
# LaCy under A.4 as printed (RESULTS.md's "LaCy (renormalized)"): outside the assets, whose
# models/lacy/latest.json must keep naming the default (full) run that the evaluations read
	OMP_NUM_THREADS=2 $(BIN)/python -m trainer --method lacy --call-objective renormalized \
		--data artifacts/token_shards --root artifacts --out artifacts/models/lacy/run-renormalized

evaluate: $(STAMP)  # every run's newest checkpoint, then the comparison report
	$(RECOVER)
	$(JOB) knowledge_job
	for key in $$($(INSTANCE) $(BIN)/python -m assets.register --latest); do \
		$(JOB) evaluation_job --tags "{\"dagster/partition\": \"$$key\"}" || exit 1; done
	$(JOB) report_job
	$(MAKE) results

results:  # RESULTS.md and docs/results/ from the comparison report (never edited by hand)
	mkdir -p docs/results && cp artifacts/report/*.png docs/results/
	sed 's#](\([a-z0-9_]*\.png\))#](docs/results/\1)#' artifacts/report/report.md > RESULTS.md

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-deploy:  # docker/ end to end: images, compose up, raw_corpus..token_shards through it, teardown (root; not in `make test`)
	PYTHON=$(PYTHON) docker/test_deploy.sh

lint: $(STAMP)
	$(BIN)/ruff check pipelines trainer evaluation assets tests bench

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

bench: $(STAMP)
	$(BIN)/python bench/labeling.py
	$(BIN)/python bench/train_step.py
	$(BIN)/python bench/cascade.py --threads 1
	$(BIN)/python bench/factscore.py

dev: $(STAMP)
	$(INSTANCE) $(BIN)/dagster dev

clean:
	rm -rf artifacts .dagster .tmp_dagster_home_*

synthetic: $(STAMP)  # the synthetic-biography testbed's default scenario: SYNTHETIC_SEEDS cells, then its report (artifacts/testbed/default/report/)
	$(RECOVER)
	for seed in $$(seq 0 $$(($(SYNTHETIC_SEEDS) - 1))); do $(ASSETS) $(CELL) --partition "default|$$seed" $(FORKSERVER) || exit 1; done
	$(ASSETS) testbed_report --partition default

synthetic-sweep: $(STAMP)  # every scenario of evaluation/testbed/cell.py at SYNTHETIC_SEEDS seeds, their reports, the sweep's (not in make test)
	$(RECOVER)
	for scenario in $(SWEEP); do \
		for seed in $$(seq 0 $$(($(SYNTHETIC_SEEDS) - 1))); do $(ASSETS) $(CELL) --partition "$$scenario|$$seed" $(FORKSERVER) || exit 1; done; \
		$(ASSETS) testbed_report --partition $$scenario || exit 1; done
	$(ASSETS) testbed_sweep_report
