"""Evaluation of LaCy checkpoints: cascade generation, FactScore, fact leakage, NLU and
validation losses. No Dagster here; `assets/` wraps these functions."""
