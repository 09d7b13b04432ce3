"""Checks that end a command in one line before anything is recorded; the CLI runs them
before it starts a flow, and the flows run the same ones for runs the CLI did not start."""


import pandas as pd
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from experiments.contract import ContractReport, DataContract, check_against_contract
from experiments.errors import InputError
from experiments.spec import ExperimentSpec
from experiments.validation import Dataset, load_dataset
from infra.errors import PlatformError
from infra.settings import Settings
from monitoring.traffic import MODEL_NAME
from registry.champion import get_champion
from registry.loading import UnsafeModel, check_registered


def require_model_name(model: str) -> None:
    if not MODEL_NAME.fullmatch(model):
        raise InputError(f"'{model}' is not a model name (letters, digits, '.', '_', '-')")


def require_champion(client: MlflowClient, model: str, purpose: str = "monitor") -> ModelVersion:
    """MODEL's champion; one line when the model is unknown or has none."""
    require_model_name(model)
    champion = get_champion(client, model)
    if champion is not None:
        return champion
    try:
        client.get_registered_model(model)
    except MlflowException as error:
        if error.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        raise InputError(f"unknown model '{model}': nothing is registered under that name; "
                         "train it with `mlops train`") from error
    raise InputError(f"model '{model}' has no champion to {purpose}; train it first")


def require_servable(client: MlflowClient, model: str) -> ModelVersion:
    """MODEL's champion, checked by the loader as the server will load it; one line if refused."""
    champion = require_champion(client, model, purpose="serve")
    try:
        check_registered(client, model, champion.version)
    except UnsafeModel as error:
        raise InputError(f"{error}; point `champion` at a version the platform registered") from error
    return champion


def require_columns(frame: pd.DataFrame, contract: DataContract, model: str, where: str) -> ContractReport:
    """How the batch differs from the model's contract; one line if it cannot be checked."""
    report = check_against_contract(frame, contract)
    if report.missing_columns:
        raise InputError(f"{where} lacks columns of {model}'s contract: "
                         f"{', '.join(report.missing_columns)}")
    if not report.usable:
        problems = "; ".join(f"{k}: {v}" for k, v in report.type_mismatches.items())
        raise InputError(f"{where} breaks {model}'s contract: {problems}")
    return report


def require_training_data(spec: ExperimentSpec) -> Dataset:
    """The spec's data, read and checked; one line naming what is wrong with it."""
    return load_dataset(spec)


def require_study_storage(settings: Settings) -> None:
    """One line when the database that holds the studies does not answer."""
    if settings.optuna_storage:
        from infra.database import require_reachable

        require_reachable(settings.optuna_storage)


def require_fan_out(settings: Settings, workers: int) -> None:
    """A fanned-out search needs the full profile and a worker polling the pool."""
    if workers <= 1:
        return
    if settings.profile != "full":
        raise PlatformError("--workers needs the full profile (a study in PostgreSQL and a work "
                            "pool); start it with `mlops up --profile full`")
    from flows.pool import require_worker

    require_worker(settings.work_pool)


def require_version(client: MlflowClient, model: str, version: int | None) -> ModelVersion:
    """Version VERSION of MODEL, or its champion when VERSION is None; one line if there is none."""
    if version is None:
        return require_champion(client, model, purpose="score")
    require_model_name(model)
    try:
        return client.get_model_version(model, str(version))
    except MlflowException as error:
        if error.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
    try:
        versions = client.search_model_versions(f"name='{model}'")
    except MlflowException as error:
        if error.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        versions = []
    if not versions:
        raise InputError(f"unknown model '{model}': nothing is registered under that name; "
                         "train it with `mlops train`")
    known = ", ".join(sorted((str(v.version) for v in versions), key=int))
    raise InputError(f"model '{model}' has no version {version} (versions: {known})")
