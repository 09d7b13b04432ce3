"""`mlops compare`: the champion against the challenger on the live records both scored that
got labels (the comparison is monitoring/challenger.py's; this finds the versions, their
models, the spec and the rows). Read-only, and no Prefect: the registry and the store only."""

from datetime import UTC, datetime, timedelta

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from experiments.contract import DataContract
from experiments.errors import InputError
from experiments.spec import ExperimentSpec
from infra.settings import process_settings
from monitoring.challenger import Contender, Incomparable, LiveComparison, compare_live, paired_rows
from monitoring.champion import load_run_spec
from monitoring.traffic import open_files, read_labelled, with_challenger
from registry.champion import get_challenger, get_champion
from registry.loading import UnsafeModel, load_registered


def compare(client: MlflowClient, name: str) -> LiveComparison:
    """NAME's champion against its challenger on the live records both scored that got
    labels (received within monitoring.feedback_days); InputError without the two."""
    _require_model(client, name)
    champion, challenger = get_champion(client, name), get_challenger(client, name)
    if champion is None:
        raise InputError(f"{name} has no champion to compare")
    if challenger is None:
        raise InputError(f"{name} has no challenger: a version gets `challenger` when the gate "
                         "does not promote it")
    return compare_versions(client, name, str(champion.version), str(challenger.version),
                            load_run_spec(client, champion.run_id))


def compare_versions(client: MlflowClient, name: str, champion: str, challenger: str,
                     spec: ExperimentSpec) -> LiveComparison:
    """CHAMPION against CHALLENGER on the labelled live records that the one answered and the
    other shadowed; `spec` is the champion's."""
    sides = [_contender(client, name, version) for version in (champion, challenger)]
    since = datetime.now(UTC) - timedelta(days=spec.monitoring.feedback_days)
    files = open_files(process_settings().traffic_base)
    labelled = with_challenger(files, name, read_labelled(files, name, spec.data.target, since))
    try:
        return compare_live(paired_rows(labelled, champion, challenger), *sides, spec)
    except Incomparable as error:
        raise InputError(f"cannot compare {name} versions {champion} and {challenger}: {error}") from error


def _require_model(client: MlflowClient, name: str) -> None:
    try:
        client.get_registered_model(name)
    except MlflowException as error:
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
            raise InputError(f"unknown model {name!r}: `mlops models` lists the registered ones") from error
        raise


def _contender(client: MlflowClient, name: str, version: str) -> Contender:
    try:
        loaded = load_registered(client, name, version)
    except UnsafeModel as error:
        raise InputError(f"cannot compare: {error}") from error
    return Contender(version, loaded.pipeline, DataContract.from_dict(loaded.metadata["mlops_contract"]))
