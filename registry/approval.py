"""Approval before serving: a version that won the gate waits, as `challenger`, for a person.

Where it stands is kept on the version: `mlops.approval` (`awaiting`, `approved`, `rejected`),
with when the wait ends, who decided and why. Moving `champion` on approval is the ordinary
move (registry/champion.py), recorded in the model's history like any other.
"""

from dataclasses import dataclass, replace
from datetime import datetime

from mlflow.tracking import MlflowClient

from registry.champion import CHALLENGER, describe_version
from registry.promotion import PromotionDecision

STATE_TAG = "mlops.approval"
DEADLINE_TAG = "mlops.approval_deadline"
BY_TAG = "mlops.approval_by"
COMMENT_TAG = "mlops.approval_comment"
FLOW_RUN_TAG = "mlops.approval_flow_run_id"
AWAITING, APPROVED, REJECTED = "awaiting", "approved", "rejected"
HELD = "awaiting approval: "  # the gate's reason, on a winner that waits


@dataclass(frozen=True)
class Decision:
    """What a person decided on a waiting version: approve or reject, who, and why."""

    approve: bool
    by: str
    comment: str

    @property
    def state(self) -> str:
        return APPROVED if self.approve else REJECTED


def hold_for_approval(decision: PromotionDecision) -> PromotionDecision:
    """In `approve` mode: a version that wins takes `challenger` and waits; one that loses is
    a challenger as always."""
    if not decision.promote:
        return decision
    return replace(decision, promote=False, awaiting_approval=True,
                   reason=f"{HELD}{decision.reason}")


def promotion_reason(gate_reason: str, decision: Decision) -> str:
    """The reason recorded with the move: the person's comment, and the gate's verdict it confirms."""
    said = f": {decision.comment}" if decision.comment else ""
    return f"approved{said} (gate: {gate_reason.removeprefix(HELD)})"


def mark_awaiting(client: MlflowClient, name: str, version: str, deadline: datetime,
                  flow_run_id: str) -> None:
    """VERSION waits for a decision until DEADLINE, in flow run FLOW_RUN_ID."""
    stamp = deadline.isoformat(timespec="seconds")
    for key, value in ((STATE_TAG, AWAITING), (DEADLINE_TAG, stamp), (FLOW_RUN_TAG, flow_run_id)):
        client.set_model_version_tag(name, version, key, value)
    describe_version(client, name, version, f"Challenger awaiting approval until {stamp}: approve "
                     f"or reject it in the Prefect UI, or with `mlops approve {name} {version}`")


def record_decision(client: MlflowClient, name: str, version: str, decision: Decision) -> None:
    """The decision on VERSION's tags; a rejected version stays `challenger` and says why."""
    # The state last: whoever sees it changed finds who decided and why already there.
    for key, value in ((BY_TAG, decision.by), (COMMENT_TAG, decision.comment),
                       (STATE_TAG, decision.state)):
        client.set_model_version_tag(name, version, key, value)
    if not decision.approve:
        aliases = client.get_registered_model(name).aliases or {}
        where = "Challenger" if str(aliases.get(CHALLENGER, "")) == str(version) else "Not serving"
        describe_version(client, name, version, f"{where}, rejected by {decision.by}: "
                         f"{decision.comment or 'no comment'}")
