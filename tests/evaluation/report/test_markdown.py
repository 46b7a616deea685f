"""The shared markdown helpers of the reports, on cases written out by hand."""

from evaluation.report.markdown import format_cell, format_number, image_link, markdown_table, titled_table


def test_cells():
    assert [format_cell(v) for v in (None, 0.123456, 2.0, 3, "a|b\nc")] == ["", "0.1235", "2", "3", "a\\|b c"]


def test_numbers():
    assert [format_number(v) for v in (None, 0.5, 1 / 3)] == ["–", "0.500", "0.333"]
    assert format_number(2.25, digits=1) == "2.2" and format_number(None, missing="n/a") == "n/a"


def test_table_columns_in_order_of_first_appearance():
    assert markdown_table([{"a": 1, "b": 0.5}, {"c": "x", "a": 2}]) == (
        "| a | b | c |\n|---|---|---|\n| 1 | 0.5 |  |\n| 2 |  | x |")
    assert markdown_table([{"a": 1, "b": 2}], columns=["b"]) == "| b |\n|---|\n| 2 |"


def test_titled_table_and_image_link(tmp_path):
    assert titled_table("T", []) == "## T\n\n(no results yet)\n"
    assert titled_table("T", [{"a": 1}]) == "## T\n\n| a |\n|---|\n| 1 |\n"
    assert image_link(tmp_path / "f.png", "F") == ""
    (tmp_path / "f.png").write_bytes(b"")
    assert image_link(tmp_path / "f.png", "F") == "\n![F](f.png)\n"
