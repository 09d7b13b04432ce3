"""The registry at a glance, on a real registry (MLflow in SQLite, no server)."""

from registry.models import ModelSummary, list_models


def test_each_model_with_its_aliases_and_version_count(sqlite_mlflow, tmp_path):
    """Given two models, one with three versions, a champion and a challenger, when listed,
    then each is named with the versions its aliases point at (as strings) and its count."""
    client = sqlite_mlflow
    client.create_registered_model("zeta")
    client.create_registered_model("alpha")
    for _ in range(3):
        client.create_model_version("alpha", source=str(tmp_path / "model"))
    client.set_registered_model_alias("alpha", "champion", "2")
    client.set_registered_model_alias("alpha", "challenger", "3")

    assert list_models(client) == [ModelSummary("alpha", "2", "3", 3),
                                   ModelSummary("zeta", None, None, 0)]


def test_versions_waiting_for_approval_are_named(sqlite_mlflow, tmp_path):
    """Given versions in each approval state, when listed, then only the waiting ones are
    named, in version order (a person's `mlops models` shows what needs deciding)."""
    from registry.approval import APPROVED, AWAITING, REJECTED, STATE_TAG

    client = sqlite_mlflow
    client.create_registered_model("alpha")
    for _ in range(11):
        client.create_model_version("alpha", source=str(tmp_path / "model"))
    for version, state in (("2", APPROVED), ("10", AWAITING), ("3", REJECTED), ("9", AWAITING)):
        client.set_model_version_tag("alpha", version, STATE_TAG, state)

    assert list_models(client)[0].awaiting_approval == ("9", "10")


def test_every_page_is_read(sqlite_mlflow, tmp_path, monkeypatch):
    """Given more models than one page holds, every one is listed."""
    client = sqlite_mlflow
    for i in range(3):
        client.create_registered_model(f"m{i}")
    search = client.search_registered_models
    monkeypatch.setattr(client, "search_registered_models",
                        lambda **kw: search(**{**kw, "max_results": 2}))

    assert [m.name for m in list_models(client)] == ["m0", "m1", "m2"]
