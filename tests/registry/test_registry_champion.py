"""get_champion: None for a model without the alias, an error for anything else."""

from types import SimpleNamespace

import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, RESOURCE_DOES_NOT_EXIST

from registry.champion import get_champion


class Registry:
    def __init__(self, code: int, aliases: dict):
        self.code, self.aliases = code, aliases

    def get_model_version_by_alias(self, name, alias):
        raise MlflowException("Registered model alias champion not found.", self.code)

    def get_registered_model(self, name):
        return SimpleNamespace(aliases=self.aliases)


@pytest.mark.parametrize("code", [RESOURCE_DOES_NOT_EXIST, INVALID_PARAMETER_VALUE])
def test_a_model_without_champion_has_none(code):
    assert get_champion(Registry(code, {"challenger": "2"}), "m") is None


def test_other_bad_requests_are_errors():
    with pytest.raises(MlflowException):
        get_champion(Registry(INVALID_PARAMETER_VALUE, {"champion": "1"}), "m")
