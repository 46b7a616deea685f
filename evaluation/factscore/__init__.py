"""FactScore (Min et al. 2023; App. B): `score` (the pipeline and its support judge),
`atomic_facts` (the fact generator), `knowledge` (the knowledge source and BM25 retrieval),
`proxy` (the lexical proxy used without a judge), `entities` (who to write about), `human`
(the check against FActScore's human labels)."""
