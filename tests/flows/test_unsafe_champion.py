"""A champion that ships code, on the real platform: `mlops serve` refuses it in one line and
training keeps its new version challenger; neither runs the champion's code."""

import textwrap

import pytest
from mlflow.tracking import MlflowClient
from network import free_port
from planted import log_planted, plant
from synthetic import binary_frame

pytestmark = pytest.mark.integration

NAME = "it-unsafe"


@pytest.fixture(scope="module")
def planted_champion(platform, tmp_path_factory):
    """NAME's champion: a real pipeline with the contract's metadata, logged with a `skops`
    package in its code paths that writes a marker when imported; the version and marker."""
    from experiments.contract import infer_contract
    from experiments.pipelines import build_pipeline, feature_frame
    from registry.champion import register

    folder = tmp_path_factory.mktemp("unsafe")
    frame = binary_frame(n=300, seed=12)
    frame.to_csv(folder / "train.csv", index=False)
    contract = infer_contract(frame, "label", "classification")
    pipeline = build_pipeline("classification", "logistic_regression", {}, contract.numeric,
                              contract.categorical, 0)
    pipeline.fit(feature_frame(frame, contract.numeric, contract.categorical), frame["label"])
    client = MlflowClient()
    run_id = client.create_run(client.create_experiment(NAME)).info.run_id
    marker = folder / "marker"
    uri = log_planted(run_id, pipeline, {"mlops_contract": contract.to_dict()},
                      plant(folder / "planted", marker))
    version = str(register(client, NAME, uri, run_id, {"mlops.trigger": "manual"}).version)
    client.set_registered_model_alias(NAME, "champion", version)
    return version, marker, folder


def test_serve_refuses_a_champion_that_ships_code_in_one_line(mlops, planted_champion):
    """Given a champion with a `skops` package in its code, `mlops serve` ends at once with
    one line naming the model, the version and why, and the package never ran."""
    version, marker, _ = planted_champion

    done = mlops("serve", NAME, "--port", str(free_port()), timeout=120)

    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [done.stderr.strip()], done.stderr[-2000:]
    assert f"refused {NAME} version {version}: it ships code" in done.stderr
    assert not marker.exists()


def test_training_keeps_its_version_challenger_without_running_the_champion(planted_champion):
    """Given the same champion, training a new version does not promote it: it waits as
    challenger with the refusal as its reason, and the champion's code never ran."""
    from flows.train import TrainParameters, train

    version, marker, folder = planted_champion
    spec = folder / "spec.yaml"
    spec.write_text(textwrap.dedent(f"""\
        name: {NAME}
        task: classification
        data: {{source: {folder / 'train.csv'}, target: label}}
        tuning: {{trials: 2, cv_folds: 3, models: [logistic_regression]}}
        profile: false  # the data profile is test_training's (8 CPU-s a training)
        """))

    result = train(TrainParameters(experiment=str(spec)))

    assert result["promoted"] is False and result["champion_version"] == version
    client = MlflowClient()
    assert client.get_model_version_by_alias(NAME, "champion").version == version
    challenger = client.get_model_version_by_alias(NAME, "challenger")
    assert challenger.version == result["model_version"]
    assert challenger.tags["mlops.promotion"].startswith(
        f"champion v{version} was not loaded (refused {NAME} version {version}: it ships code")
    assert not marker.exists()
