"""metrics.jsonl read incrementally while the trainer writes it (the training assets' live
observations), and the means over a finished run's last tenth."""

from trainer.metrics_file import MetricsTail, final_means


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


def test_final_means_over_the_last_tenth():
    rows = [{"step": s, "loss": float(s), "call_loss": None if s == 20 else 1.0} for s in range(1, 21)]
    # 20 rows: the last 2 (steps 19, 20); call_loss is null at step 20
    assert final_means(rows, ("loss", "call_loss", "absent")) == {"final_loss": 19.5, "final_call_loss": 1.0}
    assert final_means(rows[:3], ("loss",)) == {"final_loss": 3.0}  # fewer than 10 rows: the last one
