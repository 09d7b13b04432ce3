"""What monitoring compares against: the champion's contract, spec and reference data."""

import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
import yaml
from mlflow.tracking import MlflowClient

from experiments.artifacts import REFERENCE_ARTIFACT, SPEC_ARTIFACT
from experiments.contract import DataContract
from experiments.spec import ExperimentSpec
from registry.champion import get_champion


@dataclass(frozen=True)
class ChampionData:
    name: str
    version: str
    run_id: str
    spec: ExperimentSpec
    contract: DataContract
    reference: pd.DataFrame
    best_params: dict


def load_champion_data(client: MlflowClient, name: str) -> ChampionData | None:
    """The champion's reference and contract, so a promotion rotates the reference too."""
    version = get_champion(client, name)
    if version is None:
        return None
    info = mlflow.models.get_model_info(f"models:/{name}/{version.version}")
    contract = DataContract.from_dict(info.metadata["mlops_contract"])
    with tempfile.TemporaryDirectory() as tmp:
        reference = pd.read_parquet(client.download_artifacts(version.run_id, REFERENCE_ARTIFACT, tmp))
    run = client.get_run(version.run_id)
    best = {k.removeprefix("best."): _typed(v) for k, v in run.data.params.items()
            if k.startswith("best.")}
    return ChampionData(
        name=name,
        version=version.version,
        run_id=version.run_id,
        spec=load_run_spec(client, version.run_id),
        contract=contract,
        reference=reference,
        best_params=best,
    )


def load_run_spec(client: MlflowClient, run_id: str) -> ExperimentSpec:
    """The spec a training run was given, as it logged it."""
    with tempfile.TemporaryDirectory() as tmp:
        text = Path(client.download_artifacts(run_id, SPEC_ARTIFACT, tmp)).read_text()
    return ExperimentSpec.model_validate(yaml.safe_load(text))


def _typed(text: str):
    """MLflow keeps params as text; Optuna wants the values back as numbers where they were."""
    if text == "None":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text
