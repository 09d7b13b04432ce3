"""A live-evidence win in `promotion.mode: approve` moves nothing: the challenger waits for a
person as a gate winner does, and is asked for once. MLflow is real (SQLite, no server); the
comparison and Prefect's approval run are stand-ins (tests/flows/test_shadow_challenger.py
and test_approval.py run both for real)."""

import pytest

from experiments.spec import parse_spec
from flows import live_evidence
from monitoring.challenger import LiveComparison
from registry.approval import REJECTED, STATE_TAG

NAME = "evidence"
SPEC = f"""\
name: {NAME}
task: classification
data: {{source: data.csv, target: label}}
promotion: {{mode: approve, live_evidence: true, approval_timeout_hours: 3}}
"""


@pytest.fixture
def asked(sqlite_mlflow, tmp_path, monkeypatch):
    """Champion v1, challenger v2, a comparison v2 wins; the approval runs started."""
    client = sqlite_mlflow
    client.create_registered_model(NAME)
    for _ in range(2):
        client.create_model_version(NAME, source=str(tmp_path / "model"))
    client.set_registered_model_alias(NAME, "champion", "1")
    client.set_registered_model_alias(NAME, "challenger", "2")
    wins = LiveComparison("roc_auc", "1", "2", 300, 0.8, 0.9, 0.1, 0.001, True, "wins: roc_auc 0.9 vs 0.8")
    monkeypatch.setattr(live_evidence, "load_run_spec", lambda *_: parse_spec(SPEC, "t.yaml"))
    monkeypatch.setattr(live_evidence, "compare_versions", lambda *_: wins)
    started = []
    monkeypatch.setattr("flows.approval.request_approval", started.append)
    return client, started


def test_a_live_win_asks_for_approval_once_and_moves_nothing(asked):
    client, started = asked

    result = live_evidence.promote_on_live_evidence(client, NAME)

    assert (result["promoted"], result["awaiting_approval"], result["wins"]) == (False, True, True)
    [params] = started
    assert (params.model, params.version, params.timeout_hours) == (NAME, "2", 3)
    assert params.gate_reason == "live evidence: wins: roc_auc 0.9 vs 0.8"
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == "1"


def test_a_rejected_challenger_is_not_asked_for_again(asked):
    client, started = asked
    client.set_model_version_tag(NAME, "2", STATE_TAG, REJECTED)

    result = live_evidence.promote_on_live_evidence(client, NAME)

    assert (result["promoted"], result["awaiting_approval"]) == (False, False)
    assert started == []
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == "1"
