"""Approval decisions as pure functions: which gate verdicts wait, and what the move records."""

import pytest

from registry.approval import Decision, hold_for_approval, promotion_reason
from registry.promotion import PromotionDecision


@pytest.mark.parametrize(("decision", "held"), [
    (PromotionDecision(True, "no champion yet", 0.9),
     PromotionDecision(False, "awaiting approval: no champion yet", 0.9, awaiting_approval=True)),
    (PromotionDecision(True, "wins: roc_auc 0.9 vs 0.8", 0.9, 0.8, 0.1, 0.01),
     PromotionDecision(False, "awaiting approval: wins: roc_auc 0.9 vs 0.8", 0.9, 0.8, 0.1, 0.01,
                       awaiting_approval=True)),
    (PromotionDecision(False, "not better: roc_auc 0.7 vs 0.8", 0.7, 0.8, -0.1, 0.9),
     PromotionDecision(False, "not better: roc_auc 0.7 vs 0.8", 0.7, 0.8, -0.1, 0.9)),
])
def test_only_a_winner_waits_for_approval(decision, held):
    assert hold_for_approval(decision) == held


@pytest.mark.parametrize(("comment", "reason"), [
    ("looks right", "approved: looks right (gate: wins: x)"),
    ("", "approved (gate: wins: x)"),
])
def test_the_move_records_the_comment_and_the_gates_verdict(comment, reason):
    decision = Decision(True, "ana", comment)
    assert promotion_reason("awaiting approval: wins: x", decision) == reason
    assert (decision.state, Decision(False, "ana", "no").state) == ("approved", "rejected")
