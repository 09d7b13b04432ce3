"""The shadow challenger against the real platform: `mlops serve` scores live traffic with
the challenger beside the champion, `mlops compare` pairs the two on the labels that came
back, and a scheduled check promotes the challenger on live evidence only when it really is
better. A challenger that cannot be loaded changes no answer."""

import json
import textwrap

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from polling import wait_for
from serve_process import Server, as_records, user_environment
from synthetic import binary_frame

from monitoring.traffic import (
    CHALLENGER_PREDICTION,
    CHALLENGER_VERSION,
    open_files,
    read_labelled,
    with_challenger,
)

pytestmark = pytest.mark.integration

NAME = "it-shadow"
COMPARED = {"model_name", "metric", "champion_version", "challenger_version", "n",
            "champion_score", "challenger_score", "delta", "p_value"}


def _spec(folder, family: str):
    """Live evidence on; min_rows out of reach, so a check skips the drift part and only
    weighs the challenger."""
    path = folder / f"{family}.yaml"
    path.write_text(textwrap.dedent(f"""\
        name: {NAME}
        task: classification
        data: {{source: {folder / 'train.csv'}, target: label}}
        tuning: {{trials: 1, cv_folds: 3, models: [{family}], feature_engineering: false}}
        profile: false  # the data profile is test_training's (8 CPU-s a training)
        monitoring: {{every_minutes: 0, min_rows: 100000, min_labelled: 100}}
        promotion: {{live_evidence: true}}
        """))
    return str(path)


@pytest.fixture(scope="module")
def versions(platform, tmp_path_factory):
    """v1 a forest (champion by the gate), v2 a logistic regression, which cannot learn the
    XOR labels (challenger: the gate did not promote it)."""
    from flows.train import TrainParameters, train

    folder = tmp_path_factory.mktemp("shadow")
    binary_frame(n=400, seed=11).to_csv(folder / "train.csv", index=False)
    forest = train(TrainParameters(experiment=_spec(folder, "random_forest")))
    linear = train(TrainParameters(experiment=_spec(folder, "logistic_regression")))
    assert (forest["model_version"], linear["model_version"]) == ("1", "2")
    assert linear["promoted"] is False and linear["champion_version"] == "1"
    return folder


@pytest.fixture(scope="module")
def server(platform, versions):
    running = Server(NAME, user_environment(platform.home, {
        "MLOPS_SERVE_RELOAD_S": "1", "MLOPS_TRAFFIC_FLUSH_S": "0.5"}), versions)
    yield running
    running.stop()


def _serving(server, champion: str, challenger: str | None) -> bool:
    model = server.client.get("/model").json()
    return model["version"] == champion and model["challenger_version"] == challenger


def _serve_and_label(server, seed: int) -> list[dict]:
    """200 records in 4 requests, answered, then their true labels sent back."""
    frame = binary_frame(n=200, seed=seed)
    answers = []
    for part in range(4):
        rows = frame.iloc[part * 50:(part + 1) * 50]
        answer = server.predict(as_records(rows))
        assert answer.status_code == 200, answer.text
        body = answer.json()
        feedback = server.client.post("/feedback", json={"request_id": body["request_id"],
                                                         "labels": rows["label"].tolist()})
        assert feedback.status_code == 200, feedback.text
        answers.append(body)
    return answers


def _paired(champion: str, challenger: str) -> pd.DataFrame:
    from infra.settings import process_settings

    files = open_files(process_settings().traffic_base)
    rows = with_challenger(files, NAME, read_labelled(files, NAME, "label"))
    if rows.empty:
        return rows
    return rows[(rows["model_version"] == champion) & (rows[CHALLENGER_VERSION] == challenger)]


def _check() -> dict:
    from flows.monitor import MonitorParameters, monitor

    return monitor(MonitorParameters(model=NAME))


def _champion() -> str:
    return str(MlflowClient().get_model_version_by_alias(NAME, "champion").version)


def test_shadow_is_recorded_and_a_worse_challenger_is_not_promoted(server, versions, mlops):
    """Given v1 champion and v2 challenger, the answers are v1's; every labelled record has v2's
    prediction beside v1's; `mlops compare` shows v2 worse on the 200 labels; and a check with
    live evidence on leaves v1 champion."""
    assert wait_for(lambda: _serving(server, "1", "2"), timeout_s=60, interval_s=0.2)

    answers = _serve_and_label(server, seed=21)

    assert wait_for(lambda: len(_paired("1", "2")) == 200, timeout_s=30, interval_s=0.2)
    rows = _paired("1", "2").sort_values(["request_id", "record_index"])
    features = rows[["x1", "x2", "noise", "colour"]].astype({"x1": float, "x2": float, "noise": float})
    features["colour"] = features["colour"].where(features["colour"].notna(), np.nan)  # as served
    registered = {v: mlflow.pyfunc.load_model(f"models:/{NAME}/{v}") for v in ("1", "2")}
    assert rows[CHALLENGER_PREDICTION].tolist() == list(registered["2"].predict(features))
    assert rows["prediction"].tolist() == list(registered["1"].predict(features))
    assert (rows[CHALLENGER_PREDICTION] != rows["prediction"]).sum() > 20  # they really differ
    assert {a["model_version"] for a in answers} == {"1"}

    done = mlops("compare", NAME, "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    compared = json.loads(done.stdout)
    assert COMPARED <= set(compared)
    assert (compared["model_name"], compared["metric"], compared["champion_version"],
            compared["challenger_version"], compared["n"]) == (NAME, "roc_auc", "1", "2", 200)
    assert compared["champion_score"] > 0.85 > compared["challenger_score"]
    assert compared["delta"] == pytest.approx(compared["challenger_score"] - compared["champion_score"])
    assert compared["delta"] < 0 and compared["p_value"] > 0.5

    result = _check()

    assert result["challenger"]["promoted"] is False and result["challenger"]["n"] == 200
    assert _champion() == "1"


def test_a_better_challenger_is_promoted_on_live_evidence(server, versions):
    """Given v2 made champion by a person and v1 challenger, 200 labelled records later a
    check promotes v1 on live evidence: recorded in the history and on the versions, the
    challenger alias cleared, the server answering with v1 and shadowing nothing."""
    from experiments.errors import InputError
    from flows.compare import compare
    from registry.champion import Move, move_champion
    from registry.history import champion_history

    client = MlflowClient()
    move_champion(client, NAME, "2", Move("tester", "try the linear model", "1"))
    client.set_registered_model_alias(NAME, "challenger", "1")
    assert wait_for(lambda: _serving(server, "2", "1"), timeout_s=60, interval_s=0.2)
    _serve_and_label(server, seed=22)
    assert wait_for(lambda: len(_paired("2", "1")) == 200, timeout_s=30, interval_s=0.2)

    result = _check()

    weighed = result["challenger"]
    assert weighed["promoted"] is True and weighed["n"] == 200
    assert (weighed["champion_version"], weighed["challenger_version"]) == ("2", "1")
    assert weighed["delta"] > 0 and weighed["p_value"] < 0.05
    assert _champion() == "1"
    last = champion_history(client, NAME)[-1]
    assert (last["version"], last["by"]) == ("1", "live evidence")
    assert last["reason"].startswith("live evidence: on 200 labelled live records: wins: roc_auc")
    tags = client.get_model_version(NAME, "1").tags
    assert tags["mlops.promoted_by"] == "live evidence" and tags["mlops.promotion"] == last["reason"]
    assert "challenger" not in (client.get_registered_model(NAME).aliases or {})
    assert wait_for(lambda: _serving(server, "1", None), timeout_s=30, interval_s=0.2)
    with pytest.raises(InputError, match=f"{NAME} has no challenger"):  # `mlops compare`: one line
        compare(client, NAME)


def test_a_challenger_that_fails_to_load_changes_no_answer(server, versions):
    """Given a challenger whose files no longer match their digest (the loader refuses it),
    the server says so in its log, shadows nothing, and answers as the champion alone."""
    from registry.champion import register
    from registry.loading import DIGEST_TAG

    client = MlflowClient()
    first = client.get_model_version(NAME, "1")
    broken = str(register(client, NAME, first.source, first.run_id, {}).version)
    client.set_model_version_tag(NAME, broken, DIGEST_TAG, "0" * 64)
    sent = as_records(binary_frame(n=50, seed=23))
    before = server.predict(sent).json()["predictions"]

    client.set_registered_model_alias(NAME, "challenger", broken)

    assert wait_for(lambda: f"not shadowing {NAME} version {broken}" in server.log.read_text(),
                    timeout_s=30, interval_s=0.2)
    after = server.predict(sent)
    assert after.status_code == 200 and after.json()["predictions"] == before
    model = server.client.get("/model").json()
    assert model["version"] == "1" and model["challenger_version"] is None
    assert model["shadow_failed"] == 0
