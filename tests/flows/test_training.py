"""The training flow against real MLflow and Prefect servers."""

import getpass
import json
import textwrap

import mlflow
import pytest
from mlflow.tracking import MlflowClient
from synthetic import binary_frame, multiclass_frame, regression_frame

from registry.loading import DIGEST_TAG, digest_of

pytestmark = pytest.mark.integration


def write_spec(directory, name, task, source, target, trials=3, models=None, extra=""):
    models_line = f"\n  models: [{', '.join(models)}]" if models else ""
    text = textwrap.dedent(f"""\
        name: {name}
        task: {task}
        data:
          source: {source}
          target: {target}
        tuning:
          trials: {trials}
          cv_folds: 3""") + models_line + "\n" + extra
    path = directory / f"{name}.yaml"
    path.write_text(text)
    return path


def run_flow(spec_path, **overrides):
    from flows.train import TrainParameters, train

    return train(TrainParameters(experiment=str(spec_path), **overrides))


def test_cli_train_records_everything_the_contract_lists(mlops, tmp_path):
    """Given a binary CSV with categorical columns and gaps, when `mlops train --json` runs,
    then MLflow holds the parent run, one child per trial, the model, data and plots."""
    binary_frame().to_csv(tmp_path / "binary.csv", index=False)
    spec = write_spec(tmp_path, "it-binary", "classification", tmp_path / "binary.csv", "label",
                      trials=4)

    done = mlops("train", str(spec), "--json")

    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    for key in ("experiment", "run_id", "model_name", "model_version", "promoted",
                "champion_version", "metric", "flow_run_id"):
        assert key in result
    assert result["metric"]["name"] == "roc_auc"
    assert result["promoted"] is True and result["champion_version"] == result["model_version"]
    assert result["awaiting_approval"] is False  # promotion.mode auto: the gate alone decides

    client = MlflowClient()
    parent = client.get_run(result["run_id"])
    assert parent.data.tags["mlops.flow_run_id"] == result["flow_run_id"]
    assert parent.data.tags["mlops.trigger"] == "manual"
    assert len(parent.data.tags["mlops.data_digest"]) == 16
    assert parent.data.tags["mlflow.user"] == getpass.getuser()  # the UI's "Created by"
    assert parent.data.tags["mlflow.source.name"] == "flows/train.py"
    assert parent.data.tags["mlflow.source.type"] == "LOCAL"
    description = parent.data.tags["mlflow.note.content"]
    assert f"# it-binary: version {result['model_version']}" in description
    assert "Promoted to champion" in description and "Trigger: manual" in description
    model = client.get_registered_model("it-binary").description
    assert model.startswith(f"Predicts `label` (classification) from `{tmp_path / 'binary.csv'}`")
    checks = client.get_experiment_by_name("it-binary-monitoring")
    assert (f"[it-binary-monitoring]({client.tracking_uri}/#/experiments/{checks.experiment_id}/runs?"
            "workflowType=machine_learning)") in model
    assert client.get_model_version("it-binary", result["model_version"]).description.startswith(
        "Champion since ")
    assert parent.info.status == "FINISHED"
    assert {"holdout_accuracy", "holdout_precision", "holdout_recall", "holdout_f1",
            "holdout_roc_auc", "holdout_log_loss"} <= set(parent.data.metrics)
    # Overfitting diagnostics: the champion pipeline on its own training rows, beside the CV
    # and holdout scores, all three stated in the run's description.
    scores = {k: parent.data.metrics[f"{k}_roc_auc"] for k in ("train", "cv", "holdout")}
    assert scores["cv"] == result["cv_score"] and scores["holdout"] == result["metric"]["value"]
    assert (f"Fit: roc_auc {scores['train']:.4f} on the training data, {scores['cv']:.4f} in "
            f"cross-validation, {scores['holdout']:.4f} on the holdout.") in description
    assert any(k.startswith("best.") for k in parent.data.params)
    assert "best.fe.selection" in parent.data.params
    # The version's digest, taken from the files as uploaded, is the stored files' digest;
    # the holdout scores, importances and train score are the logged model's metrics too.
    version = client.get_model_version("it-binary", result["model_version"])
    assert version.tags[DIGEST_TAG] == digest_of(version.source, client.tracking_uri)
    [logged] = client.search_logged_models([parent.info.experiment_id],
                                           filter_string=f"source_run_id = '{parent.info.run_id}'")
    assert version.source == f"models:/{logged.model_id}"
    linked = {m.key for m in logged.metrics}
    assert {"holdout_roc_auc", "holdout_f1", "train_roc_auc", "importance.x1", "cv_roc_auc"} <= linked
    assert parent.inputs.dataset_inputs[0].dataset.digest

    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
    )
    assert len(children) == 4
    for child in children:
        assert child.data.tags["mlops.trial_state"] in {"COMPLETE", "PRUNED", "FAIL"}
        assert "model" in child.data.params
        assert "fe.selection" in child.data.params  # feature engineering is on by default
        assert child.data.tags["mlops.one_thread"] in {"true", "false"}  # the fits' thread limit
        assert any(m.startswith("cv_roc_auc_fold") for m in child.data.metrics)

    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    for plot in ("confusion_matrix", "roc_curve", "feature_importance", "optuna_history",
                 "learning_curve"):
        assert f"plots/{plot}.png" in artifacts
    assert client.list_artifacts(parent.info.run_id, "reference")
    contract_path = client.download_artifacts(parent.info.run_id, "contract/data_contract.json",
                                              dst_path=str(tmp_path))
    contract = json.loads(open(contract_path).read())
    assert {c["name"] for c in contract["columns"]} == {"x1", "x2", "noise", "colour"}
    # The training data's profile, every column in it, linked from the description.
    profile = open(client.download_artifacts(parent.info.run_id, "data/profile.html",
                                             dst_path=str(tmp_path))).read()
    assert all(column in profile for column in ("x1", "x2", "noise", "colour", "label"))
    assert f"/runs/{parent.info.run_id}/artifacts/data/profile.html" in description
    # The version's model card: its data by digest, and the gate's decision.
    card = open(client.download_artifacts(parent.info.run_id, "model_card.md",
                                          dst_path=str(tmp_path))).read()
    assert f"- Digest: `{parent.data.tags['mlops.data_digest']}`" in card
    assert (f"Promoted: version {result['model_version']} is the `champion` (serving). "
            f"Reason: {result['reason']}") in card
    assert client.get_model_version("it-binary", result["model_version"]).description.endswith(
        f"/runs/{parent.info.run_id}/artifacts/model_card.md?workflowType=machine_learning)")

    version = client.get_model_version_by_alias("it-binary", "champion")
    assert version.version == result["model_version"]
    info = mlflow.models.get_model_info(f"models:/it-binary/{version.version}")
    assert info.signature is not None
    assert info.saved_input_example_info is not None
    assert info.metadata["mlops_contract"]["target"] == "label"
    model = mlflow.pyfunc.load_model("models:/it-binary@champion")
    predictions = model.predict(binary_frame(n=60, seed=5).drop(columns="label"))
    assert set(predictions) <= {"yes", "no"}


def test_flow_run_links_to_its_mlflow_run(platform, tmp_path):
    """Given a finished training, the Prefect flow run is Completed and holds an artifact
    with the MLflow run's address; a column planted as a copy of the label is warned of as a
    likely leak in the run's description and the artifact."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    frame = binary_frame(seed=3)
    frame["verdict"] = frame["label"].map({"yes": "approved", "no": "declined"})
    frame.to_csv(tmp_path / "b.csv", index=False)
    spec = write_spec(tmp_path, "it-link", "classification", tmp_path / "b.csv", "label", trials=2)

    result = run_flow(spec)

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(result["flow_run_id"])
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[run.id])))
    assert run.state.is_completed()
    summary = next(a.data for a in artifacts if result["run_id"] in (a.data or ""))
    leak = "**Warning:** feature `verdict` alone predicts the target suspiciously well"
    assert leak in summary and "/artifacts/data/profile.html" in summary
    assert leak in MlflowClient().get_run(result["run_id"]).data.tags["mlflow.note.content"]


@pytest.mark.parametrize(
    ("name", "task", "frame", "target", "metric", "expected_metrics"),
    [
        ("it-multi", "classification", multiclass_frame(), "kind", "roc_auc",
         {"holdout_roc_auc", "holdout_f1", "holdout_log_loss", "train_roc_auc", "cv_roc_auc"}),
        ("it-regression", "regression", regression_frame(), "y", "rmse",
         {"holdout_rmse", "holdout_mae", "holdout_r2", "train_rmse", "cv_rmse"}),
    ],
)
def test_multiclass_and_regression_train(platform, tmp_path, name, task, frame, target, metric,
                                         expected_metrics):
    """Given multiclass or regression data, the flow trains, scores and registers a champion."""
    frame.to_csv(tmp_path / "data.csv", index=False)
    spec = write_spec(tmp_path, name, task, tmp_path / "data.csv", target, trials=3)

    result = run_flow(spec)

    assert result["metric"]["name"] == metric
    run = MlflowClient().get_run(result["run_id"])
    assert expected_metrics <= set(run.data.metrics)
    assert MlflowClient().get_model_version_by_alias(name, "champion").version == "1"


def test_champion_moves_only_when_the_new_version_wins(platform, tmp_path):
    """Given a linear champion on XOR data, retraining the same search leaves it in place
    (challenger, with the reason), and a forest that wins on the same holdout takes over."""
    binary_frame(n=400, seed=7).to_csv(tmp_path / "xor.csv", index=False)
    # Without feature engineering: pairwise products would let a linear model learn XOR.
    # Without the data profile too: such a training has none, and registers all the same.
    linear = write_spec(tmp_path, "it-gate", "classification", tmp_path / "xor.csv", "label",
                        trials=2, models=["logistic_regression"],
                        extra="  feature_engineering: false\nprofile: false\n")
    client = MlflowClient()

    first = run_flow(linear)
    second = run_flow(linear)

    assert first["promoted"] and not second["promoted"]
    assert not client.list_artifacts(first["run_id"], "data")
    card = open(client.download_artifacts(first["run_id"], "model_card.md",
                                          dst_path=str(tmp_path))).read()
    assert "- Profile: none made (`profile: false` in the spec)" in card
    description = client.get_run(first["run_id"]).data.tags["mlflow.note.content"]
    assert "Data profile: none" in description and "`profile: false` in the spec" in description
    assert client.get_model_version_by_alias("it-gate", "champion").version == first["model_version"]
    challenger = client.get_model_version_by_alias("it-gate", "challenger")
    assert challenger.version == second["model_version"]
    assert challenger.tags["mlops.promotion"].startswith("not better")

    forest_dir = tmp_path / "forest"
    forest_dir.mkdir()
    forest = write_spec(forest_dir, "it-gate", "classification", tmp_path / "xor.csv", "label",
                        trials=2, models=["random_forest"])
    third = run_flow(forest)

    assert third["promoted"], third["reason"]
    assert third["reason"].startswith("wins")
    assert client.get_model_version_by_alias("it-gate", "champion").version == third["model_version"]
    from registry.history import champion_history

    history = champion_history(client, "it-gate")
    assert [h["version"] for h in history] == [first["model_version"], third["model_version"]]
    assert history[0]["until"] is not None and history[1]["until"] is None


def test_a_failed_diagnosis_registers_nothing_and_leaves_no_upload_running(
        platform, tmp_path, monkeypatch):
    """Given the diagnosis failing while the model still uploads beside it, when the training
    runs, then it fails with that error, its run marked FAILED only after the upload ended,
    and no version is registered."""
    import time

    from experiments import training

    binary_frame().to_csv(tmp_path / "binary.csv", index=False)
    spec = write_spec(tmp_path, "it-diagnosis-fails", "classification", tmp_path / "binary.csv",
                      "label", trials=2)
    uploaded, log_model = [], training.log_model

    def slow_log_model(*args, **kwargs):
        time.sleep(1.5)  # still uploading when the diagnosis fails
        model = log_model(*args, **kwargs)
        uploaded.append(time.time())
        return model

    def failing_diagnosis(*args, **kwargs):
        raise RuntimeError("the plots failed")

    monkeypatch.setattr(training, "log_model", slow_log_model)
    monkeypatch.setattr(training, "diagnose_fit", failing_diagnosis)

    with pytest.raises(RuntimeError, match="the plots failed"):
        run_flow(spec)

    client = MlflowClient()
    assert client.search_model_versions("name = 'it-diagnosis-fails'") == []
    experiment = client.get_experiment_by_name("it-diagnosis-fails").experiment_id
    [parent] = client.search_runs([experiment], filter_string="tags.mlops.study_name LIKE '%'")
    assert parent.info.status == "FAILED"
    assert len(uploaded) == 1 and uploaded[0] * 1000 <= parent.info.end_time
