"""Where this process keeps Optuna studies, from the platform's settings."""

import functools
from pathlib import Path

from experiments.search import database_storage, journal_storage
from infra.settings import process_settings


def study_storage():
    """The platform's database (full profile: shared by every worker) or a journal file."""
    settings = process_settings()
    return _storage(settings.optuna_storage, settings.home.resolve(), settings.study_heartbeat_grace_s)


@functools.cache  # one storage (and database engine) per place, for the process's life
def _storage(database_url: str, home: Path, grace_s: int):
    if database_url:
        return database_storage(database_url, grace_s=grace_s)
    return journal_storage(home / "optuna" / "studies.journal")
