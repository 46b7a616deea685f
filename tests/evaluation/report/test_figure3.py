"""The report's Figure 3 section: per model, the loss bins' counts, accuracy and
acceptability of facts and non-facts, and its figure."""

from evaluation.report.figure3 import acceptability_section, bin_rows, figure_file


def _group(tokens, accuracy, acceptability, unparseable=0):
    return {"tokens": tokens, "accuracy": accuracy, "acceptability": acceptability, "unparseable": unparseable}


RESULT = {
    "judge": "a1:stand-in", "documents": 1,
    "overall": {"all": _group(5, 0.6, 0.75, 1), "fact": _group(2, 0.5, 0.0), "non_fact": _group(3, 2 / 3, 1.0, 1)},
    "bins": [{"bin": "[0, 1)", "low": 0.0, "all": _group(3, 1.0, 1.0, 1), "fact": _group(1, 1.0, None, 1),
              "non_fact": _group(2, 1.0, 1.0)},
             {"bin": "[1, inf)", "low": 1.0, "all": _group(2, 0.0, 0.5), "fact": _group(1, 0.0, 0.0),
              "non_fact": _group(1, 0.0, 1.0)}],
}


def test_bin_rows():
    assert bin_rows(RESULT) == [
        {"loss bin": "[0, 1)", "fact tokens": 1, "fact accuracy": 1.0, "fact acceptability": None, "non-fact tokens": 2,
         "non-fact accuracy": 1.0, "non-fact acceptability": 1.0, "no verdict": 1},
        {"loss bin": "[1, inf)", "fact tokens": 1, "fact accuracy": 0.0, "fact acceptability": 0.0, "non-fact tokens": 1,
         "non-fact accuracy": 0.0, "non-fact acceptability": 1.0, "no verdict": 0},
    ]


def test_figure_file():
    assert figure_file("LaCy (renormalized)") == "acceptability_lacy_renormalized.png"


def test_section_per_model_and_without_results(tmp_path):
    rows = {"LaCy": {"acceptability": RESULT}, "Baseline": {"acceptability": None}}
    section = acceptability_section(rows, tmp_path)
    assert section.markdown.startswith("## Figure 3: accuracy and acceptability by loss bin\n\n### LaCy\n\n"
                                       "Judge `a1:stand-in`, 1 documents, 5 tokens.\n\n| loss bin |")
    assert "### Baseline" not in section.markdown and section.markdown.endswith("\n![Figure 3: LaCy](acceptability_lacy.png)\n")
    assert section.figures == {"figure_3_acceptability_lacy": tmp_path / "acceptability_lacy.png"}
    assert [r["model"] for r in section.tables["figure_3_acceptability"]] == ["LaCy", "LaCy"]
    empty = acceptability_section({"Baseline": {"acceptability": None}}, tmp_path)
    assert empty.markdown == "## Figure 3: accuracy and acceptability by loss bin\n\n(no results yet)\n"
