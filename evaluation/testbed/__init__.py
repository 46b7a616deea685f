"""The synthetic-biography testbed (`pipelines.biographies`): its scenarios and cells
(`cell`), the exact scoring against the world's knowledge base (`exact`), the oracle partner
(`oracle`), the exact acceptability judge (`judge`), token kinds and the regime ratio R
(`kinds`), and one model's whole evaluation (`evaluate`). Its report: `evaluation.report.testbed`;
its assets: `assets/testbed.py`."""
