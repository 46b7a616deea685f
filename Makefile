# lacy: `make run` installs and materializes lacy_model with everything upstream of it on
# the embedded Wikipedia sample; `make test` runs the tests.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements.lock | sha256sum | cut -c1-12)
SHARDS = $(shell $(BIN)/python -c "from pipelines.presets import data_preset as p; print(f'{0:04d}...{p().num_shards - 1:04d}')" 2>/dev/null)
METHOD_MODELS = $(shell $(BIN)/python -c "from trainer.masks import METHODS; print(','.join(f'{m}_model' for m in METHODS))" 2>/dev/null)
DG := $(BIN)/dagster asset materialize
RECOVER := $(BIN)/python -m assets.recover  # frees the pool slots of runs killed earlier

.PHONY: install run models evaluate results test test-slow test-deploy lint bench dev clean synthetic

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -c requirements.lock --config-settings editable_mode=compat -e '.[dev]'
	@# `dagster asset materialize --select X` from the repo root needs no -m flag
	cp assets/dagster_module.pth "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/lacy_dagster_module.pth"
	@# `lm_eval --model lacy ...` (lm-eval 0.4.13 reads no plugins; see evaluation/lm_eval_model.py)
	cp evaluation/lm_eval_model.pth "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/lacy_lm_eval_model.pth"
	rm -f $(VENV)/.installed-* && touch $@

run: $(STAMP)
	$(RECOVER)
	$(DG) --select raw_corpus,tokenizer
	$(DG) --select spacy_word_labels --partition-range $(SHARDS)
	$(DG) --select token_shards,lmlm_judge_labels,lacy_model

models: $(STAMP)  # the reference model and every method of Table 5 (about an hour on 2 cores)
	$(RECOVER)
	$(DG) --select extra_token_shards,reference_model
	$(DG) --select reference_losses
	$(DG) --select $(METHOD_MODELS)

evaluate: $(STAMP)  # every run's newest checkpoint, then the comparison report
	$(RECOVER)
	$(DG) --select knowledge_source
	for key in $$($(BIN)/python -m assets.register --latest); do \
		$(DG) --select validation_losses,cascade_generations,factscore,fact_leakage,nlu --partition "$$key" || exit 1; done
	$(DG) --select comparison_report
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
	$(BIN)/dagster dev

clean:
	rm -rf artifacts .dagster .tmp_dagster_home_*

synthetic: $(STAMP)  # the synthetic-biography testbed (issue 11): data, 6 models, exact evaluation, report in artifacts/synthetic/
	OMP_NUM_THREADS=2 $(BIN)/python -m evaluation.synthetic_run --root artifacts/synthetic --threads 2
