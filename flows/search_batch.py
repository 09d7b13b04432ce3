"""A batch of one training's trials, run by a worker of the work pool (scale-out).

`mlops train --workers N` starts N of these on one Optuna study in PostgreSQL; each reads
the spec its parent run logged, checks that the data is the data the search started on,
and runs trials until the study holds the requested number, every trial a child run of
the same MLflow parent run.
"""

import optuna
from mlflow.tracking import MlflowClient
from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from pydantic import BaseModel, Field

from experiments import training
from experiments.errors import InputError
from experiments.validation import load_dataset
from flows import spare
from flows.studies import storage_of
from monitoring.champion import load_run_spec

BATCH_FLOW = "search-batch"
BATCH_DEPLOYMENT = f"{BATCH_FLOW}/{BATCH_FLOW}"


class BatchParameters(BaseModel):
    parent_run_id: str = Field(..., description="The MLflow run of the training this batch serves")


@flow(name=BATCH_FLOW)
def search_batch(params: BatchParameters) -> dict:
    """Run trials of a training's search until its study holds the requested number."""
    client = MlflowClient()
    run = client.get_run(params.parent_run_id)
    tags = run.data.tags
    spec = load_run_spec(client, run.info.run_id)
    dataset = load_dataset(spec)
    if dataset.digest != tags.get("mlops.data_digest"):
        raise InputError(
            f"{spec.data.source} changed since the search started (digest {dataset.digest}, "
            f"the run recorded {tags.get('mlops.data_digest')})"
        )
    tracking = training.Tracking(run.info.experiment_id, run.info.run_id, tags["mlops.study_name"])
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    batch = str(flow_run.get_id())
    get_run_logger().info("joining study %s for MLflow run %s", tracking.study_name, run.info.run_id)
    context = training.TrainingContext(spec, dataset, training.split(spec, dataset), tracking)
    training.run_trials(client, storage_of(tracking), context, batch=batch,
                        elsewhere=spare.spare_beside())
    return {"study": tracking.study_name, "batch": batch}
