"""`mlops serve` in the full profile (the session fixture `full_platform`): /predict, /feedback
and /model (and /openapi.json) need the bearer token `mlops up --profile full` generated, /health
and /docs stay open, bodies must be declared JSON, and a request is labelled once."""

import json
import subprocess
import textwrap

import httpx
import pytest
from network import free_port
from serve_process import MLOPS, Server, as_records
from synthetic import binary_frame

pytestmark = pytest.mark.integration

NAME = "it-serve-full"


@pytest.fixture(scope="module")
def served(full_platform, tmp_path_factory):
    """A champion trained through `mlops train`, served by `mlops serve` as a user starts it;
    the server's client sends the token from secrets.env."""
    folder = tmp_path_factory.mktemp("serve-full")
    binary_frame(n=300, seed=51).to_csv(folder / "train.csv", index=False)
    spec = folder / "spec.yaml"
    spec.write_text(textwrap.dedent(f"""\
        name: {NAME}
        task: classification
        data: {{source: {folder / 'train.csv'}, target: label}}
        tuning: {{trials: 1, cv_folds: 3, models: [logistic_regression]}}
        profile: false  # the data profile is test_training's (8 CPU-s a training)
        """))
    done = full_platform.run("train", str(spec), "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    token = full_platform.secrets()["MLOPS_SERVE_TOKEN"]
    server = Server(NAME, full_platform.env, folder, headers={"Authorization": f"Bearer {token}"})
    yield server, token
    server.stop()


def test_the_token_is_generated_into_secrets_env(full_platform):
    token = full_platform.secrets()["MLOPS_SERVE_TOKEN"]

    assert len(token) >= 32 and token.isalnum()


def test_predict_feedback_and_model_need_the_token(served):
    """Given the full profile, a request without the token, with a wrong one of the same
    length, or with the token under another scheme, is 401 with WWW-Authenticate: Bearer, and
    so is /openapi.json (it tells the columns and their training ranges); /health and the
    /docs page (which holds no contract data) answer anyone; the token is answered."""
    server, token = served
    body = {"records": as_records(binary_frame(n=3, seed=52))}
    wrong = token[:-1] + ("a" if token[-1] != "a" else "b")
    with httpx.Client(base_url=server.url, timeout=30, trust_env=False) as stranger:
        attempts = {
            "no token": stranger.post("/predict", json=body),
            "wrong token": stranger.post("/predict", json=body,
                                         headers={"Authorization": f"Bearer {wrong}"}),
            "other scheme": stranger.post("/predict", json=body,
                                          headers={"Authorization": f"Basic {token}"}),
            "feedback": stranger.post("/feedback", json={"request_id": "x", "labels": ["yes"]}),
            "model": stranger.get("/model"),
            "description": stranger.get("/openapi.json"),
        }
        health = stranger.get("/health")
        docs = stranger.get("/docs")

    for what, answer in attempts.items():
        assert answer.status_code == 401, what
        assert answer.headers["www-authenticate"] == "Bearer", what
        assert "MLOPS_SERVE_TOKEN" in answer.json()["detail"] and token not in answer.text
    assert health.status_code == 200
    assert docs.status_code == 200 and "x1" not in docs.text  # the page fetches the rest with the token
    assert server.predict(body["records"]).status_code == 200
    described = server.client.get("/openapi.json").json()
    assert described["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert "x1" in described["components"]["schemas"]["Record"]["properties"]


def test_a_body_not_declared_json_is_415(served):
    server, _ = served
    body = json.dumps({"records": as_records(binary_frame(n=2, seed=53))}).encode()

    plain = server.client.post("/predict", content=body, headers={"content-type": "text/plain"})
    undeclared = server.client.post("/predict", content=body)

    for answer in (plain, undeclared):
        assert answer.status_code == 415
        assert answer.json()["detail"].startswith("Content-Type must be application/json")


def test_a_request_is_labelled_once(served):
    server, _ = served
    request_id = server.predict(as_records(binary_frame(n=2, seed=54))).json()["request_id"]
    labels = {"request_id": request_id, "labels": ["yes", "no"]}

    first = server.client.post("/feedback", json=labels)
    second = server.client.post("/feedback", json={**labels, "labels": ["no", "no"]})

    assert first.status_code == 200
    assert second.status_code == 409 and "already has its labels" in second.json()["detail"]


def test_the_token_is_in_no_log_or_output(full_platform, served):
    server, token = served
    status = full_platform.run("status", "--json")
    logs = "\n".join(p.read_text(errors="replace") for p in (full_platform.home / "logs").glob("*.log"))

    assert token not in server.log.read_text()
    assert token not in status.stdout + status.stderr + logs


def test_serve_refuses_to_start_without_a_token(full_platform, served, tmp_path):
    """Given the full profile and an empty MLOPS_SERVE_TOKEN, `mlops serve` ends at once with
    one line naming the token and how to get one."""
    env = {**full_platform.env, "MLOPS_SERVE_TOKEN": ""}

    done = subprocess.run([MLOPS, "serve", NAME, "--port", str(free_port())], env=env,
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)

    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert "MLOPS_SERVE_TOKEN" in done.stderr and "mlops up --profile full" in done.stderr
