"""Launching training from the Prefect UI, in headless Chromium, as a person would."""

import re
import textwrap
import time

import pytest
from mlflow.tracking import MlflowClient
from synthetic import binary_frame

pytestmark = [pytest.mark.integration, pytest.mark.browser]


def test_train_launched_from_the_prefect_ui_lands_in_mlflow(platform, page, tmp_path):
    """Given the train deployment, when a person opens it in the Prefect UI, changes the
    experiment parameter and submits a custom run, then the run completes and the new
    MLflow run shows on the MLflow UI's experiment page."""
    binary_frame(n=200, seed=31).to_csv(tmp_path / "ui.csv", index=False)
    spec = tmp_path / "it-ui.yaml"
    spec.write_text(textwrap.dedent(f"""\
        name: it-ui
        task: classification
        data: {{source: {tmp_path / 'ui.csv'}, target: label}}
        tuning: {{trials: 2, cv_folds: 3, models: [logistic_regression]}}
        profile: false  # the data profile is test_training's (8 CPU-s a training)
        """))

    page.goto(f"{platform.prefect_url}/deployments", wait_until="domcontentloaded")
    page.get_by_role("link", name="train", exact=True).first.click()
    page.wait_for_url("**/deployments/deployment/**")
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_text("Custom run").click()
    experiment = page.locator("textarea").first
    experiment.fill(str(spec))
    _submit(page)
    flow_run_id = _flow_run_with_experiment(str(spec))
    page.goto(f"{platform.prefect_url}/runs/flow-run/{flow_run_id}", wait_until="domcontentloaded")
    page.get_by_text("Completed", exact=True).first.wait_for(timeout=300_000)

    client = MlflowClient()
    experiment_id = client.get_experiment_by_name("it-ui").experiment_id
    [run] = client.search_runs([experiment_id],
                               filter_string=f"tags.`mlops.flow_run_id` = '{flow_run_id}'")
    assert run.info.status == "FINISHED"
    page.goto(f"{platform.mlflow_url}/#/experiments/{experiment_id}/runs?workflowType=machine_learning",
              wait_until="domcontentloaded")
    page.get_by_text(run.info.run_name, exact=True).first.wait_for(timeout=60_000)


def _submit(page) -> None:
    """Submit the custom run form once, as a person would: the UI goes to the deployment's
    runs once the server has created the run (over 30 s once on a loaded machine). Prefect's
    own server, on SQLite, could answer 503 when another write landed meanwhile ("database is
    locked"), and its UI then showed "Something went wrong" and kept the form; the platform's
    server waits for the write lock instead (infra/prefect_server.py), so that toast fails
    the test at once."""
    page.get_by_role("button", name="Submit", exact=True).click()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if re.search(r"tab=Runs", page.url):
            return
        if page.get_by_text("Something went wrong").count():
            raise AssertionError("the Prefect UI could not create the run (the server refused)")
        page.wait_for_timeout(200)
    raise AssertionError(f"the UI neither created the run nor failed: {page.url}")


def _flow_run_with_experiment(experiment: str, timeout_s: float = 30) -> str:
    """The id of the one flow run the UI created (its parameters name our spec)."""
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = [run for run in client.read_flow_runs(limit=50)
                    if (run.parameters.get("params") or {}).get("experiment") == experiment]
            if runs:
                assert len(runs) == 1, f"{len(runs)} flow runs for one submitted form"
                return str(runs[0].id)
            time.sleep(1)
    raise AssertionError(f"no flow run with experiment {experiment} was created")
