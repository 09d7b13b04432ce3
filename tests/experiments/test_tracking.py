"""MLflow experiments as trainings find or create them."""

from mlflow.tracking import MlflowClient

from experiments.tracking import ensure_experiment


class _LateLook(MlflowClient):
    """A client whose first lookup happened just before another training created the
    experiment: it saw nothing, so it goes on to create it too."""

    def __init__(self, tracking_uri: str) -> None:
        super().__init__(tracking_uri=tracking_uri)
        self.looked = False

    def get_experiment_by_name(self, name):
        if not self.looked:
            self.looked = True
            return None
        return super().get_experiment_by_name(name)


def test_two_trainings_creating_one_experiment_both_get_it(sqlite_mlflow):
    """Given an experiment another training created after our lookup, ensure_experiment
    returns that experiment's id instead of failing on the name that already exists."""
    theirs = ensure_experiment(sqlite_mlflow, "race")

    ours = ensure_experiment(_LateLook(sqlite_mlflow.tracking_uri), "race")

    assert ours == theirs
    assert [e.name for e in sqlite_mlflow.search_experiments()].count("race") == 1


def test_a_deleted_experiment_is_restored_and_reused(sqlite_mlflow):
    first = ensure_experiment(sqlite_mlflow, "gone")
    sqlite_mlflow.delete_experiment(first)

    assert ensure_experiment(sqlite_mlflow, "gone") == first
    assert sqlite_mlflow.get_experiment(first).lifecycle_stage == "active"
