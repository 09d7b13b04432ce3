"""How `mlops monitor` and `mlops compare` put the challenger into words (pure, no servers)."""

from flows.cli import _challenger_cell, _challenger_line, _score


def test_a_missing_score_reads_as_no_score_not_none():
    assert _score(None) == "no score"
    assert _score(0.91234) == "0.9123"


def test_the_challenger_line_names_the_version_the_verdict_and_why():
    weighed = {"challenger_version": "3", "promoted": False, "reason": "12 labelled rows; 200 needed"}
    assert _challenger_line(weighed) == "v3 not promoted: 12 labelled rows; 200 needed"
    assert _challenger_line({**weighed, "promoted": True, "reason": "wins"}) == "v3 promoted: wins"


def test_a_challenger_not_weighed_has_no_version_but_says_why():
    weighed = {"promoted": False, "reason": "the challenger's contract differs"}
    assert _challenger_line(weighed) == "not promoted: the challenger's contract differs"


def test_the_models_table_names_versions_awaiting_approval_beside_the_challenger():
    row = {"challenger_version": "4", "awaiting_approval": ["4"]}
    assert _challenger_cell(row) == "4 (awaiting approval: 4)"
    assert _challenger_cell({"challenger_version": None, "awaiting_approval": []}) == "-"
