"""Pointing this test process's clients (and its settings) at a platform for a block, and
putting them back after."""

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

# Variables that point a client at some platform; a test's CLI call must find its own.
CLIENT_VARIABLES = (
    "MLFLOW_TRACKING_URI", "PREFECT_API_URL", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
    "PREFECT_API_AUTH_STRING", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL",
    "MLFLOW_S3_ENDPOINT_URL", "MLOPS_OPTUNA_STORAGE", "MLOPS_TRAFFIC_URI", "MLOPS_WORK_POOL",
    "MLOPS_EVIDENTLY_URL", "EVIDENTLY_SECRET",
)


def without_client_variables(environ: Mapping[str, str]) -> dict[str, str]:
    """A user's shell: no variable that would point a client at some other platform."""
    return {k: v for k, v in environ.items() if k not in CLIENT_VARIABLES}


@contextmanager
def patched_environ(values: Mapping[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def clients_pointed_at(values: Mapping[str, str]) -> Iterator[None]:
    """The environment, and Prefect's settings too: Prefect reads its variables once, when it
    is first imported (a test module may import it at collection, before any server is up),
    so in-process flows and clients would otherwise go to a temporary server of their own."""
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    from infra.settings import use

    updates = {setting: values[setting.name] for setting in (PREFECT_API_URL, PREFECT_API_AUTH_STRING)
               if setting.name in values}
    with patched_environ(values), temporary_settings(updates=updates):
        use(None)  # this process's settings are read again, from these variables
        try:
            yield
        finally:
            use(None)
