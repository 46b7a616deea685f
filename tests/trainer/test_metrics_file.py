"""The training assets read metrics.jsonl incrementally while the trainer writes it."""

from assets.training import MetricsTail


def steps(rows):
    return [r["step"] for r in rows]


def test_new_complete_lines_only_and_a_file_rewritten_on_resume(tmp_path):
    path = tmp_path / "metrics.jsonl"
    tail = MetricsTail(path)
    assert tail.new_rows() == []
    path.write_text('{"step": 1}\n{"step": 2}\n{"st')  # the trainer is writing step 3
    assert steps(tail.new_rows()) == [1, 2]
    with path.open("a") as f:
        f.write('ep": 3}\n')
    assert steps(tail.new_rows()) == [3] and tail.new_rows() == []
    path.write_text('{"step": 1}\n')  # a resume from step 1 rewrote it shorter
    assert steps(tail.new_rows()) == [1]
    path.write_text('{"step": 1, "loss": 2.5}\n{"step": 2}\n')  # rewritten longer: the old offset falls mid-line
    assert steps(tail.new_rows()) == [1, 2]
