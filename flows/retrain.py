"""The retraining flow: what the `mlops.drift.detected` event starts.

It is the training flow, tagged `mlops.trigger=drift` with the check that caused it, on the
champion's spec with the drifted data added when it carries labels, its search warm-started
from the champion's parameters; the same champion/challenger gate decides.
"""

from datetime import UTC, datetime

import pandas as pd
import yaml
from mlflow.tracking import MlflowClient
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from experiments.data import load_table
from experiments.errors import InputError
from flows.train import TrainParameters, train
from infra.settings import Settings
from monitoring.champion import load_champion_data


class RetrainParameters(BaseModel):
    """Filled in by the drift event's payload, or by hand from the Prefect UI."""

    model: str = Field("penguins", description="The registered model to retrain")
    monitoring_run_id: str | None = Field(None, description="The drift check that asked for it")
    current: str | None = Field(None, description="The drifted data; added to training if labelled")


@task(cache_policy=NO_CACHE)
def prepare(params: RetrainParameters) -> TrainParameters:
    """Write the spec (and the combined data) this retraining trains on."""
    champion = load_champion_data(MlflowClient(), params.model)
    if champion is None:
        raise InputError(f"model '{params.model}' has no champion to retrain")
    spec = champion.spec
    folder = Settings().home.resolve() / "retrain"
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    source = spec.data.source
    if params.current:
        current = load_table(params.current)
        if spec.data.target in current.columns:
            combined = pd.concat([load_table(spec.data.source), current[
                [c for c in current.columns if c in set(champion.contract.feature_names)
                 | {spec.data.target}]]], ignore_index=True)
            source = str(folder / f"{spec.slug}-{stamp}.parquet")
            combined.to_parquet(source, index=False)
            get_run_logger().info("training on %d rows: the spec's data plus %d labelled rows of %s",
                                  len(combined), len(current), params.current)
    spec = spec.model_copy(update={"data": spec.data.model_copy(update={"source": source})})
    spec_path = folder / f"{spec.slug}-{stamp}.yaml"
    spec_path.write_text(yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))
    return TrainParameters(
        experiment=str(spec_path), trigger="drift",
        monitoring_run_id=params.monitoring_run_id, warm_start=champion.best_params or None,
    )


@flow(name="retrain")
def retrain(params: RetrainParameters) -> dict:
    """Retrain MODEL after drift; the new version must beat the champion to replace it."""
    return train(prepare(params))


if __name__ == "__main__":
    retrain(RetrainParameters())
