"""Every registered model at a glance: its champion, its challenger, how many versions."""

from dataclasses import dataclass

from mlflow.tracking import MlflowClient

from registry.champion import CHALLENGER, CHAMPION
from registry.search import pages


@dataclass(frozen=True)
class ModelSummary:
    name: str
    champion_version: str | None
    challenger_version: str | None
    versions: int


def count_versions(client: MlflowClient, name: str) -> int:
    return sum(1 for _ in pages(client.search_model_versions, filter_string=f"name = '{name}'"))


def list_models(client: MlflowClient) -> list[ModelSummary]:
    """Every registered model, by name, with the versions its aliases point at."""
    summaries = []
    for model in pages(client.search_registered_models, max_results=100):
        # MLflow gives alias targets as numbers; versions are strings everywhere else.
        aliases = {alias: str(version) for alias, version in (model.aliases or {}).items()}
        summaries.append(ModelSummary(
            model.name, aliases.get(CHAMPION), aliases.get(CHALLENGER),
            count_versions(client, model.name)))
    return sorted(summaries, key=lambda s: s.name)
