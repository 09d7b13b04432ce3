"""The MLflow UI addresses the platform prints: in the CLI, Prefect artifacts, alerts and
descriptions. Plain strings, no imports: `mlops up` prints one without loading Prefect."""

# MLflow 3.17's UI opens an experiment on its GenAI overview (traces, an assistant panel)
# unless the address asks for the model-training view. The view comes from the address's
# `workflowType`, else the browser's last choice, else GenAI; the experiment's
# `mlflow.experimentKind` tag does not decide it (its UI reads the tag only when the view
# switch is off, and it is always on). So every MLflow address we print asks for it.
TRAINING_VIEW = "workflowType=machine_learning"


def experiments_url(tracking_uri: str) -> str:
    """MLflow's list of experiments, in the model-training view (its front page is a
    GenAI welcome)."""
    return f"{tracking_uri.rstrip('/')}/#/experiments?{TRAINING_VIEW}"


def experiment_url(tracking_uri: str, experiment_id: str) -> str:
    """The experiment's runs table, with their metrics."""
    return f"{tracking_uri.rstrip('/')}/#/experiments/{experiment_id}/runs?{TRAINING_VIEW}"


def run_url(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    return f"{tracking_uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}?{TRAINING_VIEW}"


def artifact_url(tracking_uri: str, experiment_id: str, run_id: str, path: str) -> str:
    """An artifact of the run, opened in the UI's artifact viewer (HTML is shown rendered)."""
    return (f"{tracking_uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}/artifacts/"
            f"{path}?{TRAINING_VIEW}")


def model_version_url(tracking_uri: str, name: str, version: str) -> str:
    return f"{tracking_uri.rstrip('/')}/#/models/{name}/versions/{version}"
