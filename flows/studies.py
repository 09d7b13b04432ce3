"""Where this process keeps Optuna studies, from the platform's settings."""

import functools

from experiments.search import database_storage, journal_storage
from infra.settings import Settings


@functools.cache
def study_storage():
    """The platform's database (full profile: shared by every worker) or a journal file."""
    settings = Settings()
    if settings.optuna_storage:
        return database_storage(settings.optuna_storage)
    return journal_storage(settings.home.resolve() / "optuna" / "studies.journal")
