"""Monitoring over time in Evidently's UI: each drift check lands on its model's dashboard."""

import json
import textwrap
import urllib.request

import pytest
from mlflow.tracking import MlflowClient
from network import free_port
from synthetic import binary_frame

pytestmark = pytest.mark.integration

NAME = "it-dashboard"
SHIFTED = ((), ("x1",), ("x1", "x2"))  # the columns each of the three checks moves
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _json(url: str, body: dict | None = None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with _NO_PROXY.open(request, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def checks(platform, tmp_path_factory):
    """A champion for NAME and three checks of it, each on data moved in more columns. The
    policy never retrains (drift_share 1.0), so the three stay checks of one champion."""
    from flows.monitor import MonitorParameters, monitor
    from flows.train import TrainParameters, train

    folder = tmp_path_factory.mktemp("dashboard")
    binary_frame(n=200, seed=41).to_csv(folder / "train.csv", index=False)
    spec = folder / "spec.yaml"
    spec.write_text(textwrap.dedent(f"""\
        name: {NAME}
        task: classification
        data: {{source: {folder / 'train.csv'}, target: label}}
        tuning: {{trials: 2, cv_folds: 3, models: [logistic_regression]}}
        profile: false  # the data profile is test_training's (8 CPU-s a training)
        monitoring: {{drift_share: 1.0}}
        """))
    train(TrainParameters(experiment=str(spec)))
    results = []
    for index, columns in enumerate(SHIFTED):
        batch = binary_frame(n=150, seed=50 + index)
        batch[list(columns)] += 3.0
        batch.to_csv(folder / f"check{index}.csv", index=False)
        results.append(monitor(MonitorParameters(model=NAME, current=str(folder / f"check{index}.csv"))))
    return results


def test_each_check_adds_a_snapshot_to_the_models_project(platform, checks):
    """Given three checks, then the model's Evidently project (found by name) holds three
    snapshots whose drift shares are the checks' own, in order, each naming its MLflow run;
    the monitoring runs link to the project's dashboard."""
    base = platform.evidently_url
    [project] = [p for p in _json(f"{base}/api/projects/search/{NAME}") if p["name"] == NAME]

    series = _json(f"{base}/api/v2/snapshots/{project['id']}/data_series_batch", {"series_filter": [
        {"tags": [], "metadata": {}, "metric": "evidently:metric_v2:DriftedColumnsCount",
         "metric_labels": {"value_type": "share"}}]})

    [share] = series["series"]
    assert share["values"] == [c["drift_share"] for c in checks]
    assert share["values"][0] < share["values"][1] < share["values"][2]
    assert [s["metadata"]["mlflow_run_id"] for s in series["sources"]] == [
        c["monitoring_run_id"] for c in checks]
    dashboard = f"{base}/projects/{project['id']}"
    client = MlflowClient()
    for check in checks:
        assert check["evidently_url"] == dashboard
        assert client.get_run(check["monitoring_run_id"]).data.tags["mlops.evidently_url"] == dashboard


def test_a_check_stands_when_evidently_does_not_answer(checks, tmp_path, monkeypatch):
    """Given MLOPS_EVIDENTLY_URL at a port where nothing listens, a check still completes and
    is recorded; it has no dashboard link."""
    from flows.monitor import MonitorParameters, monitor
    from infra.settings import use

    binary_frame(n=150, seed=60).to_csv(tmp_path / "now.csv", index=False)
    monkeypatch.setenv("MLOPS_EVIDENTLY_URL", f"http://127.0.0.1:{free_port()}")
    use(None)
    try:
        result = monitor(MonitorParameters(model=NAME, current=str(tmp_path / "now.csv")))
    finally:
        monkeypatch.undo()
        use(None)

    run = MlflowClient().get_run(result["monitoring_run_id"])
    assert result["evidently_url"] is None
    assert run.info.status == "FINISHED" and "mlops.evidently_url" not in run.data.tags
    assert run.data.metrics["drift_share"] == result["drift_share"]


@pytest.mark.browser
def test_the_dashboard_shows_a_point_per_check(checks, page):
    """Given three checks, when a person opens the link of the last one in Chromium, then the
    drift-share chart shows three points and the per-column and rows charts are there."""
    from playwright.sync_api import expect

    page.goto(checks[-1]["evidently_url"], wait_until="domcontentloaded")
    chart = page.locator(".MuiCard-root").filter(has=page.get_by_text("Drift share", exact=True))
    expect(chart.locator("circle")).to_have_count(len(SHIFTED), timeout=30_000)
    for title in ("Drift score by column", "Rows checked"):
        assert page.get_by_text(title, exact=True).count() == 1
