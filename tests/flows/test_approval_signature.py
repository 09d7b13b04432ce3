"""Who decided: the person `mlops approve` signed the answer with, or the Prefect UI's form."""

import pytest

from flows import approval
from flows.approval import ApprovalInput, decided_by


@pytest.mark.parametrize(("signed", "answer", "by"), [
    ({"by": "ana", "decision": "approve", "comment": "ok"}, ApprovalInput(decision="approve", comment="ok"),
     "ana"),
    (None, ApprovalInput(decision="approve", comment="ok"), "Prefect UI"),
    # a command that lost the race to the form: its signature is for another answer
    ({"by": "ana", "decision": "reject", "comment": "no"}, ApprovalInput(decision="approve", comment="ok"),
     "Prefect UI"),
])
def test_the_decision_is_credited_to_whoever_gave_that_answer(monkeypatch, signed, answer, by):
    monkeypatch.setattr(approval, "read_flow_run_input", lambda key: signed)
    assert decided_by(answer) == by
