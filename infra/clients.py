"""Pointing this process's clients at a platform.

MLflow, Prefect and boto3 read their own variables (and MLflow's basic-auth credentials
and boto3's keys have no other way in), so `connect` exports them: the one place this
process's environment is written. Our own code takes the addresses from `Connection`.
"""

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass

from infra.platform import CLIENT_RETRIES, FLOW_HEARTBEATS, NO_TEMPORARY_SERVER, QUIET, Platform
from infra.settings import Settings, use


def quiet() -> None:
    """No link, progress bar or usage record from MLflow unless the user asked for them."""
    for name, value in QUIET.items():
        os.environ.setdefault(name, value)


@dataclass(frozen=True)
class Connection:
    mlflow_url: str
    prefect_api_url: str
    variables: Mapping[str, str]  # what the clients read, by their native names

    @property
    def prefect_ui_url(self) -> str:
        return self.prefect_api_url.removesuffix("/api")


def connection(platform: Platform, settings: Settings) -> Connection:
    """The platform's addresses, unless the user set the clients' own variables."""
    variables = {**QUIET, **CLIENT_RETRIES, **FLOW_HEARTBEATS, **NO_TEMPORARY_SERVER,
                 **platform.client_environment()}
    if settings.mlflow_tracking_uri:
        variables["MLFLOW_TRACKING_URI"] = settings.mlflow_tracking_uri
    if settings.prefect_api_url:
        variables["PREFECT_API_URL"] = settings.prefect_api_url
    return Connection(variables["MLFLOW_TRACKING_URI"], variables["PREFECT_API_URL"], variables)


def connect(connection: Connection, settings: Settings) -> Settings:
    """Export the clients' variables (those already set win; one set empty counts as unset:
    `PREFECT_API_URL=` kept empty sent a training to a temporary Prefect server of Prefect's
    own, its run lost with it) and make the platform's own settings (study storage, traffic
    store, pool) this process's; returns those settings."""
    for name, value in connection.variables.items():
        if not os.environ.get(name):
            os.environ[name] = value
    if "prefect.context" in sys.modules:  # imported before (a warm start): it reads them again
        sys.modules["prefect.context"].refresh_global_settings_context()
    given = {name.removeprefix("MLOPS_").lower(): value for name, value in connection.variables.items()
             if name.startswith("MLOPS_")}
    chosen = settings.model_copy(update={
        k: v for k, v in given.items() if k in Settings.model_fields and k not in settings.model_fields_set})
    use(chosen)
    return chosen
