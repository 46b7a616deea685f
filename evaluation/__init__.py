"""Evaluation of checkpoints: validation call/non-call losses (A.4.3), the cascade (A.5),
fact leakage (sec. 5.3), NLU via lm-eval (Table 1), FactScore (App. B). No Dagster here;
`assets/` wraps these functions."""
