"""Where this process keeps Optuna studies, from the platform's settings."""

import functools
from pathlib import Path

from experiments.search import database_storage, journal_storage
from experiments.training import Tracking, base_of
from infra.settings import process_settings


def study_storage(base: str):
    """Where the studies of `base` live (one spec on one data set; each training of it is a
    study of its own, `{base}-{n}`): the platform's database (full profile: shared by every
    worker), or a journal file of theirs under MLOPS_HOME/optuna.

    One journal file per base, not one for every study: a process replays a journal whole
    at its first storage call, so a shared one cost every training more than the last
    (0.1 s for 18 trainings of 20 trials, and growing with each)."""
    settings = process_settings()
    journal = settings.home.resolve() / "optuna" / f"{base}.journal"
    return _storage(settings.optuna_storage, journal, settings.study_heartbeat_grace_s)


def storage_of(tracking: Tracking):
    """The storage of a training's study."""
    return study_storage(base_of(tracking.study_name))


@functools.cache  # one storage (and database engine) per place, for the process's life
def _storage(database_url: str, journal: Path, grace_s: int):
    if database_url:
        return database_storage(database_url, grace_s=grace_s)
    return journal_storage(journal)
