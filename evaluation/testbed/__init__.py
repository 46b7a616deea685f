"""The synthetic-biography testbed (`pipelines.biographies`): exact scoring against the
world's knowledge base (`exact`), and its comparison report (`report`)."""
