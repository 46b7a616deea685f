"""Per-checkpoint measurements that need no partner: validation call/non-call losses
(A.4.3, `validation`), fact leakage (5.3, `leakage`), NLU through lm-eval (Table 1, `nlu`,
with the `lm_eval --model lacy` adapter `lm_eval_model`)."""
