"""Measurements of checkpoints, in rooms by concern (no Dagster here; `assets/` wires them):

- `backends/`: the models that evaluations talk to, local or served: text-in text-out
  judges (`text`), next-token cascade partners (`partners`), the HTTP endpoint client.
- `cascade/`: the A.5 cascade (the decoding loop, the equal call budget of section 5.1).
- `factscore/`: FactScore (App. B): atomic facts, the knowledge source and retrieval, the
  support judge, the lexical proxy, the entities, the human-labelled check.
- `measures/`: per-checkpoint measurements that need no partner: validation call/non-call
  losses (A.4.3), fact leakage (5.3), NLU through lm-eval (Table 1).
- `testbed/`: the synthetic-biography world's exact evaluation and report.
- `checkpoint.py` (loading a checkpoint once), `cli.py` (the `lacy` command).
"""
