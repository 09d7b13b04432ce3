"""The local profile: SQLite backends and local artifacts, everything under MLOPS_HOME."""

from functools import partial
from pathlib import Path

from infra.platform import (
    Platform,
    ServerOptions,
    evidently_service,
    mlflow_service,
    prefect_home,
    prefect_service,
    runner_service,
)
from infra.templates import seed_mlflow_database, seed_prefect_database


def local_platform(
    home: Path, host: str, mlflow_port: int, prefect_port: int, runner_port: int | None = None,
    evidently_port: int | None = None,
) -> Platform:
    """MLflow and Prefect (and the deployment runner and Evidently's UI, given their ports)
    on this machine."""
    home = home.resolve()
    artifacts = home / "mlflow" / "artifacts"
    # A new home starts from the migrated empty databases `make install` made (infra/templates.py).
    mlflow = mlflow_service(host, mlflow_port, ServerOptions(
        env={"MLFLOW_BACKEND_STORE_URI": f"sqlite:///{home / 'mlflow' / 'mlflow.db'}",
             "MLFLOW_ARTIFACTS_DESTINATION": str(artifacts)},
        folders=(artifacts,),
        prepare=partial(seed_mlflow_database, home / "mlflow" / "mlflow.db"),
    ))
    prefect = prefect_service(home, host, prefect_port, ServerOptions(
        prepare=partial(seed_prefect_database, prefect_home(home) / "prefect.db"),
    ))
    services = (mlflow, prefect)
    client_env = {"MLFLOW_TRACKING_URI": mlflow.url, "PREFECT_API_URL": f"{prefect.url}/api",
                  "MLOPS_PROFILE": "local"}
    if evidently_port is not None:
        # Alongside the others: it takes seconds to import, which would add to `up` if it waited.
        evidently = evidently_service(home, evidently_port)
        services += (evidently,)
        client_env["MLOPS_EVIDENTLY_URL"] = evidently.url
    if runner_port is not None:
        # Spawned with MLflow and Prefect: its imports then overlap their start (`up` cold:
        # healthy 4.7 s after Prefect when it started once Prefect answered).
        services += (runner_service(home, host, runner_port, client_env, spawn_early=True),)
    return Platform("local", home, mlflow.url, prefect.url, services)
