"""Batch scoring end to end on the session platform: `mlops predict` and the `predict` flow
score as the registered model itself predicts, locally and on a real S3 API, record a run
and live traffic, and refuse a user's mistakes in one line with nothing written."""

import io
import json
import re
import textwrap
import uuid

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from prefect.client.orchestration import get_client
from synthetic import binary_frame

from experiments.pipelines import feature_frame
from monitoring.traffic import TRAFFIC, open_files, read_parts
from registry.loading import load_registered

pytestmark = pytest.mark.integration

NAME = "it-predict"
FEATURES = ["x1", "x2", "noise", "colour"]


@pytest.fixture(scope="module")
def trained(platform, tmp_path_factory):
    """A champion for NAME: a small forest on XOR data (one trial)."""
    from flows.train import TrainParameters, train

    folder = tmp_path_factory.mktemp("predict")
    binary_frame(n=300, seed=31).to_csv(folder / "train.csv", index=False)
    spec = folder / "spec.yaml"
    spec.write_text(textwrap.dedent(f"""\
        name: {NAME}
        task: classification
        data: {{source: {folder / 'train.csv'}, target: label}}
        tuning: {{trials: 1, cv_folds: 3, models: [random_forest]}}
        profile: false  # the data profile is test_training's (8 CPU-s a training)
        """))
    result = train(TrainParameters(experiment=str(spec)))
    return result["model_version"], folder


def own_predictions(version: str, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """What the registered version predicts itself: MLflow's pyfunc on the feature columns,
    and its pipeline's class probabilities."""
    pyfunc = mlflow.pyfunc.load_model(f"models:/{NAME}/{version}")
    loaded = load_registered(MlflowClient(), NAME, version)
    contract = loaded.metadata["mlops_contract"]
    numeric = [c["name"] for c in contract["columns"] if c["kind"] == "numeric"]
    categorical = [c["name"] for c in contract["columns"] if c["kind"] == "categorical"]
    features = feature_frame(frame, numeric, categorical)
    return np.asarray(pyfunc.predict(features)), loaded.pipeline.predict_proba(features)


def all_traffic() -> pd.DataFrame:
    from infra.settings import process_settings

    return read_parts(open_files(process_settings().traffic_base), NAME, TRAFFIC)


def batch_traffic(flow_run_id: str) -> pd.DataFrame:
    traffic = all_traffic()
    return traffic[traffic["request_id"] == f"batch-{flow_run_id}"] if len(traffic) else traffic


def predictions_runs() -> int:
    experiment = MlflowClient().get_experiment_by_name(f"{NAME}-predictions")
    return 0 if experiment is None else len(MlflowClient().search_runs([experiment.experiment_id]))


def test_mlops_predict_scores_a_csv_as_the_model_predicts(trained, mlops, tmp_path):
    """Given a CSV (the label column too), `mlops predict --json` writes Parquet whose
    predictions and probabilities are the registered version's own, row for row; one run in
    NAME-predictions records it, and the rows join the live-data store marked as a batch."""
    version, _ = trained
    frame = binary_frame(n=250, seed=32)
    frame.to_csv(tmp_path / "batch.csv", index=False)

    done = mlops("predict", NAME, "--data", str(tmp_path / "batch.csv"),
                 "--out", str(tmp_path / "scored.parquet"), "--json")

    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert {k: result[k] for k in ("model_name", "model_version", "rows", "bad_rows", "out")} == {
        "model_name": NAME, "model_version": version, "rows": 250, "bad_rows": 0,
        "out": str(tmp_path / "scored.parquet")}
    scored = pd.read_parquet(tmp_path / "scored.parquet")
    predictions, probabilities = own_predictions(version, frame)
    assert list(scored.columns) == [*frame.columns, "prediction", "proba_no", "proba_yes"]
    assert (scored["prediction"].to_numpy() == predictions).all()
    assert np.array_equal(scored[["proba_no", "proba_yes"]].to_numpy(), probabilities)
    assert scored["label"].tolist() == frame["label"].tolist()
    run = MlflowClient().get_run(result["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.metrics["rows"] == 250 and run.data.params["model_version"] == version
    assert run.data.tags["mlops.output_uri"] == str(tmp_path / "scored.parquet")
    assert run.data.tags["mlops.flow_run_id"] == result["flow_run_id"]
    assert run.data.tags["mlops.batch_id"] == f"batch-{result['flow_run_id']}"
    live = batch_traffic(result["flow_run_id"])
    assert sorted(live["record_index"]) == list(range(250))
    assert (live.sort_values("record_index")["prediction"].to_numpy() == predictions).all()
    with get_client(sync_client=True) as prefect:
        flow_run = prefect.read_flow_run(result["flow_run_id"])
    assert flow_run.name == f"predict {NAME}"
    assert {f"model:{NAME}", "trigger:manual"} <= set(flow_run.tags)


def test_the_flow_scores_s3_data_to_s3_in_chunks_skipping_bad_rows(trained, s3_server, monkeypatch):
    """Given Parquet on S3 with one row whose x1 is text, the flow with bad_rows=skip and
    small chunks writes CSV to S3: every other row, predicted as the model predicts."""
    from flows.predict import PredictParameters, predict

    version, _ = trained
    for name, value in s3_server.environment().items():
        monkeypatch.setenv(name, value)
    frame = binary_frame(n=150, seed=33).astype({"x1": object})
    frame.loc[70, "x1"] = "n/a"
    prefix = f"s3://{s3_server.bucket}/predict-{uuid.uuid4().hex[:8]}"
    s3 = s3_server.client()
    buffer = io.BytesIO()
    frame.astype({"x1": str}).to_parquet(buffer, index=False)
    key = prefix.split("/", 3)[3]
    s3.put_object(Bucket=s3_server.bucket, Key=f"{key}/in.parquet", Body=buffer.getvalue())

    result = predict(PredictParameters(model=NAME, data=f"{prefix}/in.parquet", out=f"{prefix}/out.csv",
                                       bad_rows="skip", chunk_rows=40))

    assert (result["rows"], result["bad_rows"], result["bad_rows_by_column"]) == (149, 1, {"x1": 1})
    body = s3.get_object(Bucket=s3_server.bucket, Key=f"{key}/out.csv")["Body"].read()
    scored = pd.read_csv(io.BytesIO(body), float_precision="round_trip")  # as written, to the bit
    good = frame.drop(index=70).reset_index(drop=True)
    predictions, probabilities = own_predictions(version, good)
    assert (scored["prediction"].to_numpy() == predictions).all()
    assert np.array_equal(scored[["proba_no", "proba_yes"]].to_numpy(), probabilities)
    assert sorted(batch_traffic(result["flow_run_id"])["record_index"]) == [i for i in range(150) if i != 70]


def unchanged(frame: pd.DataFrame, folder) -> pd.DataFrame:
    return frame


def infinite_noise(frame: pd.DataFrame, folder) -> pd.DataFrame:
    frame.loc[4, "noise"] = np.inf
    return frame


def existing_output(frame: pd.DataFrame, folder) -> pd.DataFrame:
    (folder / "out.csv").write_text("kept\n")
    return frame


BAD = {
    # case: (model, extra arguments, how the data or folder is spoilt, fragment of the one line)
    "unknown model": ("it-predict-nope", {}, unchanged, "unknown model 'it-predict-nope'"),
    "unknown version": (NAME, {"version": 99}, unchanged, "has no version 99 (versions: 1"),
    "existing output": (NAME, {}, existing_output, "exists; pass --overwrite"),
    "missing columns": (NAME, {}, lambda frame, _: frame.drop(columns="x2"),
                        "lacks columns of it-predict's contract: x2"),
    "bad row": (NAME, {}, infinite_noise, "row 5: 'noise' is not a finite number ('inf')"),
}
THROUGH_THE_CLI = ("unknown version", "bad row")  # one refused before the flow, one in it


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_refused_and_nothing_is_written(trained, mlops, tmp_path, case):
    """Given a user's mistake, batch scoring refuses it naming it (`mlops predict`: one line,
    exit 1); no output file, no run in NAME-predictions, no rows in the live-data store."""
    from experiments.errors import InputError
    from flows.predict import PredictParameters, predict

    model, options, spoil, fragment = BAD[case]
    spoil(binary_frame(n=20, seed=34), tmp_path).to_csv(tmp_path / "in.csv", index=False)
    before = sorted(p.name for p in tmp_path.iterdir())
    runs, rows = predictions_runs(), len(all_traffic())
    where = {"data": str(tmp_path / "in.csv"), "out": str(tmp_path / "out.csv")}

    if case in THROUGH_THE_CLI:
        done = mlops("predict", model, "--data", where["data"], "--out", where["out"],
                     *(f"--{k}={v}" for k, v in options.items()))
        assert done.returncode == 1
        assert fragment in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    else:
        with pytest.raises(InputError, match=re.escape(fragment)):
            predict(PredictParameters(model=model, **where, **options))

    assert (predictions_runs(), len(all_traffic())) == (runs, rows)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    if case == "existing output":
        assert (tmp_path / "out.csv").read_text() == "kept\n"


def test_predict_is_a_deployment_with_typed_parameters():
    """The runner serves `predict`; its form in the Prefect UI types each parameter."""
    from flows.serve import deployments

    deployment = next(d for d in deployments() if d.name == "predict")

    schema = deployment._parameter_openapi_schema.model_dump()
    fields = schema["definitions"]["PredictParameters"]["properties"]
    assert set(fields) == {"model", "data", "out", "version", "bad_rows", "overwrite", "chunk_rows"}
    assert fields["bad_rows"]["enum"] == ["fail", "skip"]
