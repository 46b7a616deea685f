# lacy: `make run` installs and materializes lacy_model with everything upstream of it on
# the embedded Wikipedia sample; `make test` runs the tests.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements.lock | sha256sum | cut -c1-12)
SHARDS := $(shell $(PYTHON) -c "import os; n=int(os.environ.get('LACY_NUM_SHARDS', 4)); print(f'{0:04d}...{n-1:04d}')")
DG := $(BIN)/dagster asset materialize

.PHONY: install run test test-slow bench dev clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -c requirements.lock --config-settings editable_mode=compat -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

run: $(STAMP)
	$(DG) --select raw_corpus,tokenizer
	$(DG) --select spacy_word_labels --partition-range $(SHARDS)
	$(DG) --select token_shards,lmlm_judge_labels,lacy_model

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

bench: $(STAMP)
	$(BIN)/python bench/labeling.py
	$(BIN)/python bench/train_step.py

dev: $(STAMP)
	$(BIN)/dagster dev

clean:
	rm -rf artifacts .dagster .tmp_dagster_home_*
