"""Measurements of checkpoints, in rooms by concern (no Dagster here; `assets/` wires them):

- `backends/`: the models that evaluations talk to, local or served: one backend per engine
  (transformers, vLLM, an OpenAI-compatible server) offering judge generation (`text`) and
  cascade partners' next tokens (`partners`); `config.load_backend` picks one.
- `cascade/`: the A.5 cascade (the decoding loop, the equal call budget of section 5.1).
- `factscore/`: FactScore (App. B): atomic facts, the knowledge source and retrieval, the
  support judge, the lexical proxy, the entities, the human-labelled check.
- `measures/`: per-checkpoint measurements that need no partner: validation call/non-call
  losses (A.4.3), acceptability (section 3, A.1), fact leakage (5.3), NLU through lm-eval
  (Table 1).
- `testbed/`: the synthetic-biography world's exact evaluation and report.
- `checkpoint.py` (loading a checkpoint once), `cli.py` (the `lacy` command).
"""
