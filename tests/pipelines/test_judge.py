"""A.2.2: LMLM judge annotations to per-token <CALL> labels."""

from pipelines.judge import delegated_chars, judge_calls, parse_annotated, value_spans

NAPOLEON_CLEAN = "Napoleon was born on August 15, 1769."
NAPOLEON_ANNOTATED = "Napoleon was born on [dblookup('Napoleon', 'Birth Date') -> August 15, 1769] August 15, 1769."


def render(tokenizer, annotated, clean):
    mask, report = delegated_chars(annotated, clean)
    ids, starts, ends = tokenizer.encode_with_offsets(clean)
    calls = judge_calls(mask, starts, ends)
    assert len(calls) == len(ids)
    return "".join("<CALL>" if c else clean[s:e] for c, s, e in zip(calls, starts, ends)), report


def test_napoleon_example_of_the_paper(tokenizer):
    # The paper: "Napoleon was born on <CALL> <CALL><CALL>, <CALL><CALL><CALL><CALL>."
    # ("▁August" is one token that carries its leading space; digits are split; the comma
    # and the spaces before 15 and 1769 are tokens of their own and stay normal targets)
    text, report = render(tokenizer, NAPOLEON_ANNOTATED, NAPOLEON_CLEAN)
    assert text == "Napoleon was born on<CALL> <CALL><CALL>, <CALL><CALL><CALL><CALL>."
    assert (report.lookups, report.placed, report.unplaced) == (1, 1, [])


def test_parse_removes_lookups_and_keeps_positions():
    plain, lookups = parse_annotated(NAPOLEON_ANNOTATED)
    assert plain == "Napoleon was born on  August 15, 1769."
    assert lookups[0].entity == "Napoleon" and lookups[0].relation == "Birth Date"
    assert lookups[0].value == "August 15, 1769" and plain[lookups[0].position :].lstrip().startswith("August")


def test_double_quoted_relation_and_case_difference():
    annotated = """He served as [dblookup('Mollie Marcoux', "Director's Role") -> Athletic Director] athletic director."""
    plain, lookups = parse_annotated(annotated)
    assert lookups[0].relation == "Director's Role"
    assert [plain[a:b] for a, b in value_spans(plain, lookups[0])] == ["athletic director"]


def test_list_value_written_with_and():
    annotated = "children of [dblookup('Ralph Earl', 'Parents') -> Ralph Earle, Phebe Whittemore Earl] Ralph Earle and Phebe Whittemore Earl. By"
    clean = "children of Ralph Earle and Phebe Whittemore Earl. By"
    mask, report = delegated_chars(annotated, clean)
    assert "".join(c if m else "_" for c, m in zip(clean, mask)) == "____________Ralph_Earle_____Phebe_Whittemore_Earl____"
    assert report.placed == 1


def test_whitespace_differences_between_annotated_and_clean_text():
    clean = "Ralph Earl\n\nRalph Earl (May 11, 1751\u00a0– August 16, 1801) was an American painter.\nEarly life.\nHe"
    annotated = (
        "Ralph Earl ( May 11, 1751 – [dblookup('Ralph Earl', 'Death Date') -> August 16, 1801] August 16, 1801) was an "
        "[dblookup('Ralph Earl', 'Occupation') -> painter] American painter.\n\nEarly life.\nHe"
    )
    mask, report = delegated_chars(annotated, clean)
    delegated = "".join(c for c, m in zip(clean, mask) if m)
    assert delegated == "August161801" + "painter"
    assert report.placed == 2


def test_a_value_that_is_not_in_the_text_is_counted_not_dropped():
    annotated = "his nephew [dblookup('Ralph Earl', 'Nephew') -> Nephew] Augustus Earle who was the first European artist"
    clean = "his nephew Augustus Earle who was the first European artist"
    mask, report = delegated_chars(annotated, clean, doc_id="d1")
    assert not mask.any()
    assert report.lookups == 1 and report.placed == 0
    assert report.unplaced == [{"doc_id": "d1", "value": "Nephew", "reason": "value not found after lookup"}]


def test_a_few_words_may_stand_between_lookup_and_value():
    annotated = "one of the [dblookup('X', 'Type') -> national high schools] three national high schools in Vietnam."
    clean = "one of the three national high schools in Vietnam."
    mask, _ = delegated_chars(annotated, clean)
    assert "".join(c for c, m in zip(clean, mask) if m) == "nationalhighschools"
