"""The staged data pipeline of LaCy: corpus, spaCy fact labels (A.2.1), tokenizer, token
shards and LMLM judge labels (A.2.2). No Dagster here; `assets/` wraps these functions."""
