"""Approval before serving (`promotion.mode: approve`): a version that won the gate waits, as
`challenger`, in a flow run of its own for a person to approve or reject it.

The run is suspended (Prefect's `suspend_flow_run` with a typed input): it holds no process
while it waits, survives a restart of the runner, and its page in the Prefect UI shows a
Resume form with the decision and a comment. `mlops approve` / `mlops reject` resume it with
the same input, so both paths end in this flow, which moves `champion` (or not) under the
model's promotion lock and records the decision. Resumed, Prefect runs the flow again from
the top; `suspend_flow_run` then returns the input at once.

Prefect fails a run that nobody resumed within `promotion.approval_timeout_hours`: the
version stays `challenger`, rejected by the timeout, and can no longer be approved.
"""

from datetime import UTC, datetime, timedelta
from typing import Literal
from uuid import UUID

from mlflow.tracking import MlflowClient
from prefect import flow, get_run_logger
from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment
from prefect.flow_runs import suspend_flow_run
from prefect.input import RunInput
from prefect.input.actions import create_flow_run_input, read_flow_run_input
from prefect.runtime import flow_run
from pydantic import BaseModel, Field

from experiments.errors import InputError
from flows import lifecycle
from flows.move_input import MAX_REASON
from flows.naming import run_tags
from infra.errors import PlatformError
from registry.approval import FLOW_RUN_TAG, HELD, Decision, mark_awaiting, promotion_reason, record_decision

APPROVE_DEPLOYMENT = "approve/approve"  # flow name / deployment name (flows/serve.py)
VERSION_TAG = "version:"
PAUSE_KEY = "decision"
BY_KEY = "mlops-by"  # who decided, when `mlops approve` resumed the run (the UI's form says not)
UI = "Prefect UI"
EXPIRED_BY = "approval timeout"
EXPIRE_DEPLOYMENT = "expire-approval/expire-approval"
EXPIRY_GRACE_S = 600


class ApprovalInput(RunInput):
    """The form a person fills in to resume the waiting run (Prefect UI) or `mlops approve`."""

    decision: Literal["approve", "reject"] = Field(
        description="approve: the version takes `champion` now; reject: it stays `challenger`")
    comment: str = Field("", max_length=MAX_REASON, description="Why (recorded with the decision)")


class ApproveParameters(BaseModel):
    """What the training that asked for approval passes on."""

    model: str = Field(description="The registered model")
    version: str = Field(description="The version that won the gate and waits as `challenger`")
    gate_reason: str = Field("", description="The gate's verdict on it")
    timeout_hours: float = Field(24, gt=0, description="No decision within N hours: rejected")
    trigger: str = Field("manual", description="What started the training that made it")


def run_name(model: str, version: str) -> str:
    return f"approve {model} v{version}"


def version_tag(version: str) -> str:
    return f"{VERSION_TAG}{version}"


def request_approval(params: ApproveParameters) -> UUID:
    """Start the approval flow run and return at once: nobody waits on a person."""
    run = run_deployment(APPROVE_DEPLOYMENT, parameters={"params": params.model_dump()},
                         timeout=0, as_subflow=False,
                         tags=[f"model:{params.model}", version_tag(params.version)])
    return run.id


def _name_this_run(params: ApproveParameters) -> None:
    tags = [*run_tags(flow_run.get_tags(), params.model, params.trigger), version_tag(params.version)]
    with get_client(sync_client=True) as client:
        client.update_flow_run(flow_run.get_id(), name=run_name(params.model, params.version),
                               tags=sorted(set(tags)))


def _decide(client: MlflowClient, params: ApproveParameters, decision: Decision) -> dict:
    """Move `champion` on approval (the person's move, under the model's lock), record it."""
    moved, notes = None, []
    if decision.approve:
        reason = promotion_reason(params.gate_reason, decision)
        moved = lifecycle.promote(client, params.model, params.version, reason, decision.by)
        notes = [lifecycle.announce(client, moved, "approve"), lifecycle.follow(client, params.model)]
    record_decision(client, params.model, params.version, decision)
    for note in filter(None, notes):
        get_run_logger().warning(note)
    return {"model_name": params.model, "version": params.version, "decision": decision.state,
            "by": decision.by, "comment": decision.comment,
            "champion_version": moved.champion_version if moved else None,
            "previous_champion": moved.previous_champion if moved else None}


def _signed(answer: ApprovalInput, by: str) -> dict:
    return {"by": by, **answer.model_dump(include={"decision", "comment"})}


def decided_by(answer: ApprovalInput) -> str:
    """Who gave ANSWER: the person `mlops approve` named with that very answer, or the UI's form
    (a signature for another answer is from a command that lost the race to the form)."""
    signed = read_flow_run_input(BY_KEY) or {}
    return signed["by"] if signed == _signed(answer, signed.get("by", "")) else UI


@flow(name="approve")
def approve(params: ApproveParameters) -> dict:
    """Wait for a person to approve or reject VERSION, then move `champion` or not."""
    _name_this_run(params)
    client, run_id = MlflowClient(), str(flow_run.get_id())
    if client.get_model_version(params.model, params.version).tags.get(FLOW_RUN_TAG) != run_id:
        deadline = datetime.now(UTC) + timedelta(hours=params.timeout_hours)
        mark_awaiting(client, params.model, params.version, deadline, run_id)
        schedule_expiry(params, deadline, run_id)
    form = ApprovalInput.with_initial_data(description=form_text(client, params))
    # Prefect's own timeout is the backstop, should no runner be up at the deadline.
    answer = suspend_flow_run(wait_for_input=form, key=PAUSE_KEY,
                              timeout=round(params.timeout_hours * 3600 + EXPIRY_GRACE_S))
    decision = Decision(answer.decision == "approve", decided_by(answer), answer.comment.strip())
    get_run_logger().info("%s v%s %s by %s", params.model, params.version, decision.state, decision.by)
    return _decide(client, params, decision)


def form_text(client: MlflowClient, params: ApproveParameters) -> str:
    """What the Prefect UI shows above the Resume form: what is decided, and where to look."""
    from flows.links import model_version_url
    from registry.approval import DEADLINE_TAG

    deadline = client.get_model_version(params.model, params.version).tags.get(DEADLINE_TAG)
    url = model_version_url(client.tracking_uri, params.model, params.version)
    return (f"**{params.model} version {params.version}** won the gate and waits as `challenger`: "
            f"{params.gate_reason.removeprefix(HELD)}. See [the version in MLflow]({url}).\n\n"
            f"**approve**: it takes `champion` now. **reject**: it stays `challenger`. "
            f"No decision by {deadline}: rejected.")


def schedule_expiry(params: ApproveParameters, deadline: datetime, run_id: str) -> None:
    """A run of `expire-approval` at the deadline, which rejects the version if it still waits:
    so the timeout is a decision recorded like a person's."""
    run_deployment(EXPIRE_DEPLOYMENT, parameters={"params": params.model_dump()},
                   scheduled_time=deadline, timeout=0, as_subflow=False,
                   flow_run_name=f"expire approval {params.model} v{params.version}",
                   tags=[f"model:{params.model}", version_tag(params.version)],
                   idempotency_key=f"expire-{run_id}")


@flow(name="expire-approval")
def expire_approval(params: ApproveParameters) -> bool:
    """At the deadline: reject VERSION if it still waits for approval (whether it did)."""
    client = MlflowClient()
    hours = f"{params.timeout_hours:g} h"
    try:
        run_id = settle(client, params.model, params.version,
                        ApprovalInput(decision="reject", comment=f"no decision within {hours}"),
                        EXPIRED_BY)
    except InputError as error:  # decided meanwhile, or the version is gone
        get_run_logger().info("nothing to expire: %s", error)
        return False
    get_run_logger().info("%s v%s rejected: no decision within %s", params.model, params.version, hours)
    return outcome(client, params.model, params.version, run_id)["decision"] == "rejected"


def waiting_run(client, model: str, version: str):
    """The suspended approval run of MODEL VERSION, or None."""
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
        FlowRunFilterTags,
    )
    from prefect.client.schemas.objects import StateType

    runs = client.read_flow_runs(
        deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["approve"])),
        flow_run_filter=FlowRunFilter(
            tags=FlowRunFilterTags(all_=[f"model:{model}", version_tag(version)]),
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))),
    )
    return runs[0] if runs else None


def settle(mlflow: MlflowClient, model: str, version: str, answer: ApprovalInput, by: str) -> UUID:
    """Resume VERSION's waiting approval run with ANSWER from BY; the flow moves `champion`."""
    from prefect.exceptions import FlowPauseTimeout, NotPausedError, ObjectAlreadyExists
    from prefect.flow_runs import resume_flow_run
    from prefect.input.actions import delete_flow_run_input

    lifecycle.require_model(mlflow, model)
    lifecycle.require_version(mlflow, model, version)
    with get_client(sync_client=True) as client:
        run = waiting_run(client, model, version)
    if run is None:
        raise InputError(f"{model} version {version} awaits no approval: {_why_not(mlflow, model, version)}")
    try:
        create_flow_run_input(BY_KEY, _signed(answer, by), flow_run_id=run.id)
    except ObjectAlreadyExists:  # an earlier command's, whose resume did not go through
        delete_flow_run_input(BY_KEY, flow_run_id=run.id)
        create_flow_run_input(BY_KEY, _signed(answer, by), flow_run_id=run.id)
    try:
        resume_flow_run(run.id, run_input=answer.model_dump(include={"decision", "comment"}))
    except NotPausedError as error:
        raise InputError(f"{model} version {version} was decided meanwhile (flow run {run.id})") from error
    except FlowPauseTimeout as error:
        raise InputError(f"{model} version {version}: its approval timed out (rejected)") from error
    return run.id


def _why_not(mlflow: MlflowClient, model: str, version: str) -> str:
    from registry.approval import AWAITING, BY_TAG, DEADLINE_TAG, STATE_TAG

    tags = mlflow.get_model_version(model, version).tags
    state = tags.get(STATE_TAG)
    if state is None:
        return "it never waited for one (only a version that wins the gate in `promotion.mode: approve` does)"
    if state == AWAITING:
        deadline = tags.get(DEADLINE_TAG, "")
        if deadline and datetime.fromisoformat(deadline) > datetime.now(UTC):
            return (f"its approval run {tags.get(FLOW_RUN_TAG)} is not waiting (starting, or "
                    "stopped by hand: see it in the Prefect UI)")
        return f"no decision came by {deadline}, so it was rejected (it stays challenger)"
    return f"it was {state} by {tags.get(BY_TAG, 'someone')} already"


def outcome(mlflow: MlflowClient, model: str, version: str, run_id: UUID, timeout_s: float = 300) -> dict:
    """What the resumed approval run did, once it has finished (the runner starts it again)."""
    import time

    from registry.approval import BY_TAG, COMMENT_TAG, STATE_TAG
    from registry.champion import get_champion

    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
        while not (run.state and run.state.is_final()) and time.monotonic() < deadline:
            time.sleep(0.5)
            run = client.read_flow_run(run_id)
    if not (run.state and run.state.is_completed()):
        state = run.state.name if run.state else "unknown"
        raise PlatformError(f"the approval flow run {run_id} is {state}, not completed "
                            f"({run.state.message if run.state else ''}): see it in the Prefect UI")
    tags = mlflow.get_model_version(model, version).tags
    champion = get_champion(mlflow, model)
    return {"model_name": model, "version": version, "decision": tags.get(STATE_TAG),
            "by": tags.get(BY_TAG), "comment": tags.get(COMMENT_TAG, ""),
            "champion_version": None if champion is None else str(champion.version),
            "flow_run_id": str(run_id)}
