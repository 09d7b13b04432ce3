"""Every registered model at a glance: its champion, its challenger, how many versions, and
which wait for a person's approval."""

from dataclasses import dataclass

from mlflow.tracking import MlflowClient

from registry.approval import AWAITING, STATE_TAG
from registry.champion import CHALLENGER, CHAMPION
from registry.search import pages


@dataclass(frozen=True)
class ModelSummary:
    name: str
    champion_version: str | None
    challenger_version: str | None
    versions: int
    awaiting_approval: tuple[str, ...] = ()  # in version order


def list_models(client: MlflowClient) -> list[ModelSummary]:
    """Every registered model, by name, with the versions its aliases point at."""
    summaries = []
    for model in pages(client.search_registered_models, max_results=100):
        # MLflow gives alias targets as numbers; versions are strings everywhere else.
        aliases = {alias: str(version) for alias, version in (model.aliases or {}).items()}
        versions = list(pages(client.search_model_versions, filter_string=f"name = '{model.name}'"))
        awaiting = sorted((v.version for v in versions if (v.tags or {}).get(STATE_TAG) == AWAITING),
                          key=int)
        summaries.append(ModelSummary(model.name, aliases.get(CHAMPION), aliases.get(CHALLENGER),
                                      len(versions), tuple(str(v) for v in awaiting)))
    return sorted(summaries, key=lambda s: s.name)
