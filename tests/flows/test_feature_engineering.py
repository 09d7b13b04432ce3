"""Feature engineering end to end: the search records its choices, and the chosen pipeline is
what is registered, served and monitored (on the raw input columns)."""

import textwrap

import pytest
from mlflow.tracking import MlflowClient
from synthetic import log_target_frame

from experiments.pipelines import build_pipeline

pytestmark = pytest.mark.integration

NAME = "it-feature-engineering"


def test_the_chosen_feature_engineering_is_recorded_served_and_monitored_on_raw_columns(
        platform, tmp_path):
    """Given a heavy-tailed column that a linear model needs logged, when the flow trains ridge
    with feature engineering on, then every trial run records its fe.* choices, the parent the
    best ones, and the champion that serving loads is the pipeline those choices build, which
    answers raw records; monitoring's reference and contract hold the raw columns only."""
    from flows.train import TrainParameters, train
    from monitoring.champion import load_champion_data
    from serving.model import load_version

    frame = log_target_frame(n=300, seed=4)
    frame.to_csv(tmp_path / "skewed.csv", index=False)
    spec = tmp_path / "spec.yaml"
    spec.write_text(textwrap.dedent(f"""\
        name: {NAME}
        task: regression
        data: {{source: {tmp_path / 'skewed.csv'}, target: y}}
        tuning: {{trials: 3, cv_folds: 3, models: [ridge]}}
        profile: false  # the data profile is test_training's (8 CPU-s a training)
        """))

    result = train(TrainParameters(experiment=str(spec)))

    client = MlflowClient()
    parent = client.get_run(result["run_id"])
    children = client.search_runs([parent.info.experiment_id],
                                  f"tags.mlflow.parentRunId = '{result['run_id']}'")
    assert len(children) == 3
    for child in children:
        assert {"fe.transform", "fe.interactions", "fe.selection"} <= set(child.data.params)
    best = {k: v for k, v in result["best_params"].items() if k.startswith("fe.")}
    assert set(best) == {"fe.transform", "fe.interactions", "fe.selection"}
    assert all(parent.data.params[f"best.{k}"] == v for k, v in best.items())

    served = load_version(client.get_model_version_by_alias(NAME, "champion"), client)
    # best_params are what the flow refitted: the estimator's kwargs and the fe.* choices.
    expected = build_pipeline("regression", result["best_model"], result["best_params"],
                              ["x", "z"], ["site"], 0)
    assert [n for n, _ in served.pipeline.steps] == [n for n, _ in expected.steps]
    numeric = [n for n, _ in served.pipeline.named_steps["prepare"].transformers[0][1].steps]
    assert numeric == [n for n, _ in expected.named_steps["prepare"].transformers[0][1].steps]
    raw = frame.drop(columns="y").head(20)
    assert served.pipeline.predict(raw).shape == (20,)

    champion = load_champion_data(client, NAME)
    assert set(champion.contract.feature_names) == {"x", "z", "site"}
    assert set(champion.reference.columns) == {"x", "z", "site", "y"}
