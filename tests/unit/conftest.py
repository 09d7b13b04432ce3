"""Fixtures every unit test shares."""

import optuna
import pytest
from threadpoolctl import threadpool_limits


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """OpenMP/BLAS thread start-up dominates fitting tiny data; one thread keeps tests fast."""
    with threadpool_limits(1):
        yield


@pytest.fixture(autouse=True)
def quiet_optuna():
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    yield
    optuna.logging.set_verbosity(before)
