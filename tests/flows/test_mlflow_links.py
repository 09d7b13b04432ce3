"""Every kind of MLflow address the platform prints, opened in a new browser as a new user
would: each lands on a page with the runs and their metrics, never on MLflow's GenAI
overview (issue 14 part 4)."""

import re
import textwrap

import pytest
from mlflow.tracking import MlflowClient
from retrainings import cli_json
from synthetic import binary_frame

from flows.links import model_version_url

pytestmark = [pytest.mark.integration, pytest.mark.browser]

NAME = "it-links"


def test_each_printed_mlflow_link_shows_runs_and_metrics(platform, mlops, page, tmp_path):
    """Given a training and a check made with the CLI, when each MLflow address it printed
    (and the ones the model's description and alerts hold) is opened in a fresh browser, then
    the page shows the run's name and its metrics, the training run its trials, and none
    lands on the GenAI overview."""
    binary_frame(n=200, seed=5).to_csv(tmp_path / "links.csv", index=False)
    binary_frame(n=120, seed=6).drop(columns="label").to_csv(tmp_path / "live.csv", index=False)
    spec = tmp_path / f"{NAME}.yaml"
    spec.write_text(textwrap.dedent(f"""\
        name: {NAME}
        task: classification
        data: {{source: {tmp_path / 'links.csv'}, target: label}}
        tuning: {{trials: 2, cv_folds: 3, models: [logistic_regression]}}
        profile: false  # the data profile is test_training's (8 CPU-s a training)
        """))
    trained = cli_json(mlops, "train", str(spec))
    check = cli_json(mlops, "monitor", NAME, "--current", str(tmp_path / "live.csv"))
    client = MlflowClient()
    training, monitoring = client.get_run(trained["run_id"]), client.get_run(check["monitoring_run_id"])
    [checks_link] = re.findall(r"\]\((http[^)]+)\)", client.get_registered_model(NAME).description)

    shows = {
        trained["run_url"]: [training.info.run_name, "holdout_roc_auc", "trial-000", "trial-001"],
        check["run_url"]: [monitoring.info.run_name, "drift_share"],
        checks_link: [monitoring.info.run_name],
        trained["mlflow_ui"]: [NAME, f"{NAME}-monitoring"],
        model_version_url(platform.mlflow_url, NAME, trained["model_version"]):
            [f"Version {trained['model_version']}", "champion"],
    }
    for link, texts in shows.items():
        new_user = page.context.browser.new_context().new_page()  # nothing remembered
        new_user.goto(link, wait_until="domcontentloaded")
        for text in texts:
            new_user.get_by_text(text).first.wait_for(timeout=30_000)
        assert "/overview" not in new_user.url and "workflowType=genai" not in new_user.url, link
        new_user.context.close()
