"""Where studies live, and the heartbeat grace of a database study (a SQLite file, no server)."""

from pathlib import Path

import pytest

from flows.studies import study_storage
from infra.errors import PlatformError
from infra.settings import Settings, load_settings, use


@pytest.fixture
def settings_of():
    def make(**fields) -> Settings:
        use(Settings(**fields))
        return study_storage("base")

    yield make
    use(None)


def test_a_database_study_fails_a_silent_trial_after_the_grace_of_the_settings(settings_of, tmp_path: Path):
    storage = settings_of(home=tmp_path, optuna_storage=f"sqlite:///{tmp_path}/optuna.db",
                          study_heartbeat_grace_s=12)

    assert (storage.heartbeat_interval, storage.grace_period) == (5, 12)


def test_by_default_the_grace_is_four_beats(settings_of, tmp_path: Path):
    storage = settings_of(home=tmp_path, optuna_storage=f"sqlite:///{tmp_path}/optuna.db")

    assert storage.grace_period == 20


@pytest.mark.parametrize("value", ["9", "0", "twenty"])
def test_a_grace_shorter_than_two_beats_is_refused_in_one_line(monkeypatch, tmp_path: Path, value):
    """One late beat (a busy machine) must not fail a living trial."""
    monkeypatch.setenv("MLOPS_STUDY_HEARTBEAT_GRACE_S", value)

    with pytest.raises(PlatformError) as refused:
        load_settings(tmp_path / ".env")

    message = str(refused.value)
    assert message.startswith("MLOPS_STUDY_HEARTBEAT_GRACE_S: ") and "\n" not in message


def test_each_spec_and_data_set_keeps_its_studies_in_a_journal_of_its_own(settings_of, tmp_path: Path):
    """Given studies of two bases (two specs, or one spec on two data sets), each base's
    journal under MLOPS_HOME/optuna holds its own studies only, so opening one replays
    nothing of the other's trainings."""
    import optuna

    use(Settings(home=tmp_path))
    try:
        for base in ("iris-aaaa-1111", "wine-bbbb-2222"):
            optuna.create_study(study_name=f"{base}-1", storage=study_storage(base))
        names = {base: [s.study_name for s in optuna.get_all_study_summaries(
            study_storage(base), include_best_trial=False)] for base in ("iris-aaaa-1111", "wine-bbbb-2222")}
    finally:
        use(None)

    assert names == {"iris-aaaa-1111": ["iris-aaaa-1111-1"], "wine-bbbb-2222": ["wine-bbbb-2222-1"]}
    assert sorted(p.name for p in (tmp_path / "optuna").iterdir()) == [
        "iris-aaaa-1111.journal", "wine-bbbb-2222.journal"]
