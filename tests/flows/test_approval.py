"""Approval before serving (`promotion.mode: approve`) against the real platform: a winner waits
in a suspended flow run of its own; a person settles it from the Prefect UI's Resume form or with
`mlops approve` / `mlops reject`, through that same run; bad input moves nothing."""

import getpass
import json
import re
import textwrap
import time

import pytest
from browser import browser_page
from mlflow.tracking import MlflowClient
from polling import wait_for
from prefect.client.orchestration import get_client
from synthetic import binary_frame

from registry.history import champion_history

pytestmark = pytest.mark.integration

NAME = "it-approve"


def wait_until_paused(flow_run_id: str, timeout_s: float = 120):
    """The approval run once it is suspended, waiting for its input."""
    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(flow_run_id)
            if (run.state and run.state.is_paused()) or time.monotonic() > deadline:
                assert run.state.is_paused(), f"approval run {flow_run_id} is {run.state.name}"
                return run
            time.sleep(0.3)


@pytest.fixture(scope="module")
def awaiting(platform, tmp_path_factory):
    """NAME v1 trained in approve mode: it wins (no champion yet), so it waits for approval."""
    from flows.approval import waiting_run
    from flows.train import TrainParameters, train

    folder = tmp_path_factory.mktemp("approval")
    binary_frame(n=200, seed=11).to_csv(folder / "train.csv", index=False)
    spec = folder / "spec.yaml"
    spec.write_text(textwrap.dedent(f"""\
        name: {NAME}
        task: classification
        data: {{source: {folder / 'train.csv'}, target: label}}
        tuning: {{trials: 2, cv_folds: 3, models: [logistic_regression]}}
        profile: false  # the data profile is test_training's (8 CPU-s a training)
        promotion: {{mode: approve, approval_timeout_hours: 1}}
        """))
    result = train(TrainParameters(experiment=str(spec)))
    with get_client(sync_client=True) as client:
        assert wait_for(lambda: waiting_run(client, NAME, result["model_version"]), timeout_s=60)
        run = waiting_run(client, NAME, result["model_version"])
    return result, str(run.id)


def test_a_winner_waits_as_challenger_in_a_suspended_run(awaiting):
    """Given approve mode, when a training makes a version that wins the gate, then training
    ends with awaiting_approval, the version holds `challenger`, not `champion`, and its approval
    run is suspended with the typed form."""
    result, run_id = awaiting

    run = wait_until_paused(run_id)

    assert (result["awaiting_approval"], result["promoted"], result["champion_version"]) == (
        True, False, None)
    version = result["model_version"]
    assert MlflowClient().get_registered_model(NAME).aliases == {"challenger": version}
    tags = MlflowClient().get_model_version(NAME, version).tags
    assert tags["mlops.approval"] == "awaiting"
    assert tags["mlops.promotion"] == "awaiting approval: no champion yet"
    assert (run.name, run.state.name) == (f"approve {NAME} v{version}", "Suspended")
    assert run.state.state_details.run_input_keyset  # the UI shows the form for ApprovalInput


@pytest.fixture(scope="module")
def never_waited(awaiting):
    """A model whose only version never waited for approval."""
    from registry.champion import register

    client = MlflowClient()
    first = client.get_model_version(NAME, awaiting[0]["model_version"])
    register(client, "it-approve-never", first.source, first.run_id, {})


@pytest.mark.parametrize(("args", "fragment"), [
    (["approve", "no-such-model", "1"], "unknown model 'no-such-model'"),
    (["approve", "it-approve-never", "1"], "awaits no approval: it never waited for one"),
    (["approve", NAME, "one"], "version must be a number"),
    (["reject", NAME, "1"], "--reason must say why"),
])
def test_bad_input_is_one_line_and_moves_nothing(mlops, never_waited, args, fragment):
    """Given NAME v1 waiting, when approve/reject names an unknown model, a version that waits
    for nothing, a non-number, or no reason to reject, then one line, exit 1, nothing moved."""
    client = MlflowClient()
    before = [(client.get_registered_model(n).aliases, champion_history(client, n))
              for n in (NAME, "it-approve-never")]

    done = mlops(*args, timeout=120)

    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert fragment in done.stderr
    assert [(client.get_registered_model(n).aliases, champion_history(client, n))
            for n in (NAME, "it-approve-never")] == before


@pytest.mark.browser
def test_approved_in_the_prefect_ui_the_version_becomes_champion(platform, awaiting):
    """Given v1 waiting, when a person opens its approval run in the Prefect UI, resumes it with
    decision approve and a comment, then v1 holds `champion` in MLflow, recorded as moved by
    the Prefect UI with the comment."""
    from flows.approval import outcome

    result, run_id = awaiting
    version = result["model_version"]
    wait_until_paused(run_id)

    with browser_page() as page:
        page.goto(f"{platform.prefect_url}/runs/flow-run/{run_id}", wait_until="domcontentloaded")
        page.get_by_role("button", name="Resume").click()
        form = page.locator(".p-modal__card")
        form.get_by_text("won the gate").wait_for()  # the form says what is decided
        form.locator(".p-select-button__control").click()
        page.keyboard.press("ArrowDown")  # opens the list of choices
        page.locator(".p-select-option").filter(has_text=re.compile("^approve$")).click()
        form.locator("textarea").fill("checked the card")
        submit(page, form.get_by_role("button", name="Submit"))
        closed = wait_for(lambda: not form.is_visible(), timeout_s=60, interval_s=0.5)
        assert closed, f"the Resume form stayed open: {form.inner_text()}"
        # The runner runs the resumed flow again; a failure names its state and message.
        done = outcome(MlflowClient(), NAME, version, run_id, timeout_s=300)
        page.reload(wait_until="domcontentloaded")
        page.get_by_text("Completed", exact=True).first.wait_for(timeout=60_000)

    assert done["decision"] == "approved"
    client = MlflowClient()
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == version
    [period] = champion_history(client, NAME)
    assert (period["version"], period["by"]) == (version, "Prefect UI")
    assert period["reason"] == "approved: checked the card (gate: no champion yet)"
    tags = client.get_model_version(NAME, version).tags
    assert (tags["mlops.approval"], tags["mlops.approval_by"]) == ("approved", "Prefect UI")
    assert "challenger" not in client.get_registered_model(NAME).aliases


def submit(page, button) -> None:
    """Click Submit until the page sends the resume request: a click while the form still
    re-renders can be lost (a fresh-clone run once kept the form open 60 s, nothing sent).
    Clicked again only when nothing was sent, so a resume is never sent twice."""
    from playwright.sync_api import TimeoutError as NothingSent

    for _ in range(3):
        try:
            with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/resume"),
                                     timeout=10_000):
                button.click()
            return
        except NothingSent:
            continue
    pytest.fail("Submit sent no resume request in three clicks")


def waiting_version(name: str, source) -> str:
    """A new version of NAME, `challenger`, waiting in its approval run (as an approve-mode
    training that it won leaves it)."""
    from flows.approval import ApproveParameters, request_approval
    from registry.champion import CHALLENGER, register

    client = MlflowClient()
    version = str(register(client, name, source.source, source.run_id, {}).version)
    client.set_registered_model_alias(name, CHALLENGER, version)
    run_id = request_approval(ApproveParameters(model=name, version=version,
                                                gate_reason="wins: by hand", timeout_hours=1))
    wait_until_paused(str(run_id))
    return version


def test_approve_and_reject_from_the_command_line(mlops, awaiting):
    """Given v1 champion and v2 waiting, when a person runs `mlops approve`, then v2 takes
    `champion`, moved by them; a v3 then rejected stays `challenger` with champion unchanged;
    deciding v3 again is refused."""
    from experiments.errors import InputError
    from flows.approval import ApprovalInput, outcome, settle
    from registry.champion import Move, move_champion, register
    from registry.models import list_models

    name, me, client = "it-approve-cli", getpass.getuser(), MlflowClient()
    first = client.get_model_version(NAME, awaiting[0]["model_version"])
    register(client, name, first.source, first.run_id, {})
    move_champion(client, name, "1", Move("gate", "no champion yet", None))
    second = waiting_version(name, first)
    listed = {m.name: m for m in list_models(client)}[name]
    assert (listed.challenger_version, listed.awaiting_approval) == (second, (second,))

    approved = mlops("approve", name, second, "--reason", "a week of shadow traffic", "--json")

    assert approved.returncode == 0, approved.stderr[-3000:]
    said = json.loads(approved.stdout)
    assert {k: said[k] for k in ("decision", "by", "comment", "champion_version")} == {
        "decision": "approved", "by": me, "comment": "a week of shadow traffic",
        "champion_version": second}
    assert [(h["version"], h["by"]) for h in champion_history(client, name)] == [("1", "gate"), (second, me)]

    third = waiting_version(name, first)
    run_id = settle(client, name, third, ApprovalInput(decision="reject", comment="too slow"), "ana")
    rejected = outcome(client, name, third, run_id)

    assert (rejected["decision"], rejected["by"], rejected["champion_version"]) == ("rejected", "ana", second)
    assert client.get_registered_model(name).aliases == {"champion": second, "challenger": third}
    with pytest.raises(InputError, match="awaits no approval: it was rejected by ana already"):
        settle(client, name, third, ApprovalInput(decision="approve"), me)


def test_no_decision_in_time_is_a_recorded_rejection(awaiting):
    """Given a version waiting with a two-second approval window, when nobody decides, then at
    the deadline its expiry run rejects it through the approval run (recorded as the timeout's
    decision, champion unmoved), and approving it afterwards is refused."""
    from experiments.errors import InputError
    from flows.approval import ApprovalInput, ApproveParameters, request_approval, settle
    from registry.champion import register

    name, client = "it-approve-late", MlflowClient()
    first = client.get_model_version(NAME, awaiting[0]["model_version"])
    version = str(register(client, name, first.source, first.run_id, {}).version)
    run_id = request_approval(ApproveParameters(model=name, version=version, gate_reason="wins: x",
                                                timeout_hours=2 / 3600))

    def settled():
        return client.get_model_version(name, version).tags.get("mlops.approval") == "rejected"

    assert wait_for(settled, timeout_s=120, interval_s=0.5)
    tags = client.get_model_version(name, version).tags
    assert (tags["mlops.approval_by"], tags["mlops.approval_comment"]) == (
        "approval timeout", "no decision within 0.000555556 h")
    with get_client(sync_client=True) as prefect:
        assert wait_for(lambda: prefect.read_flow_run(run_id).state.is_completed(), timeout_s=30)
    with pytest.raises(InputError, match="it was rejected by approval timeout already"):
        settle(client, name, version, ApprovalInput(decision="approve"), "ana")
    assert "champion" not in client.get_registered_model(name).aliases
