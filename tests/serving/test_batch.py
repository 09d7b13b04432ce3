"""Batch scoring without servers: chunks checked against the contract, scored as the pipeline
scores them, staged files published whole or not at all."""

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from synthetic import binary_frame, regression_frame

from experiments.contract import infer_contract, rows_breaking_contract
from experiments.data import data_digest
from experiments.errors import InputError
from experiments.pipelines import build_pipeline, feature_frame
from serving.batch import (
    BadRows,
    output_schema,
    require_columns,
    score_chunk,
    traffic_columns,
)
from serving.model import ServedModel
from serving.tables import Digest, StagedOutput, open_input


def served(frame: pd.DataFrame, target: str, task: str, family: str) -> ServedModel:
    contract = infer_contract(frame, target, task)
    x = feature_frame(frame, contract.numeric, contract.categorical)
    pipeline = build_pipeline(task, family, {}, contract.numeric, contract.categorical, 0)
    return ServedModel("m", "3", "run", contract, pipeline.fit(x, frame[target]),
                       datetime.now(UTC))


@pytest.fixture(scope="module")
def classifier() -> ServedModel:
    return served(binary_frame(n=200, seed=3), "label", "classification", "logistic_regression")


def test_non_numbers_and_infinities_break_the_contract_nulls_do_not(classifier):
    chunk = pd.DataFrame({"x1": ["1.5", "abc", None, "inf"], "x2": [1.0, 2.0, np.nan, 3.0],
                          "noise": [0.0, 0.0, 0.0, -np.inf], "colour": ["red", "nope", None, 7]})

    found = rows_breaking_contract(chunk, classifier.contract)

    assert {k: v.tolist() for k, v in found.items()} == {
        "x1": [False, True, False, True], "noise": [False, False, False, True]}


def test_a_chunk_scores_as_the_pipeline_with_one_probability_column_per_class(classifier):
    frame = binary_frame(n=50, seed=9).assign(id=np.arange(50))

    scored = score_chunk(classifier, frame, 0, BadRows(), skip_bad=False)

    features = feature_frame(frame, classifier.contract.numeric, classifier.contract.categorical)
    assert list(scored.output.columns) == [*frame.columns, "prediction", "proba_no", "proba_yes"]
    assert (scored.output["prediction"] == classifier.pipeline.predict(features)).all()
    assert np.array_equal(scored.output[["proba_no", "proba_yes"]].to_numpy(),
                          classifier.pipeline.predict_proba(features))
    assert scored.output["id"].tolist() == list(range(50))


def test_a_regressor_adds_predictions_only():
    frame = regression_frame(n=80)
    model = served(frame, "y", "regression", "ridge")

    scored = score_chunk(model, frame.drop(columns="y"), 0, BadRows(), skip_bad=False)

    assert list(scored.output.columns) == ["a", "b", "group", "prediction"]


def test_a_bad_row_fails_naming_it_or_is_skipped_and_counted(classifier):
    frame = binary_frame(n=10, seed=4).astype({"x1": object})
    frame.loc[6, "x1"] = "oops"

    with pytest.raises(InputError, match=r"row 107: 'x1' is not a finite number \('oops'\)"):
        score_chunk(classifier, frame, 100, BadRows(), skip_bad=False)
    bad = BadRows()
    scored = score_chunk(classifier, frame, 100, bad, skip_bad=True)

    assert (bad.total, bad.by_column) == (1, {"x1": 1})
    assert scored.rows.tolist() == [100, 101, 102, 103, 104, 105, 107, 108, 109]
    assert len(scored.output) == 9


def test_missing_columns_and_clashing_names_are_refused(classifier):
    with pytest.raises(InputError, match="lacks columns of m's contract: x2"):
        require_columns(["x1", "noise", "colour"], classifier.contract, "m", "d.csv")
    with pytest.raises(InputError, match="columns the output adds: prediction"):
        require_columns(["x1", "x2", "noise", "colour", "prediction"], classifier.contract, "m", "d.csv")


def test_batch_rows_land_in_the_store_layout_under_a_batch_request_id(classifier):
    frame = binary_frame(n=5, seed=5)
    scored = score_chunk(classifier, frame, 20, BadRows(), skip_bad=False)

    columns = traffic_columns(scored, "3", datetime.now(UTC), "batch-abc")

    assert set(columns) == {"x1", "x2", "noise", "colour", "prediction", "model_version",
                            "served_at", "request_id", "record_index"}
    assert columns["record_index"].tolist() == [20, 21, 22, 23, 24]
    assert set(columns["request_id"]) == {"batch-abc"}


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_csv_and_parquet_read_in_chunks_with_one_type_per_column(tmp_path, suffix, classifier):
    frame = binary_frame(n=30, seed=6)
    frame["note"] = ["1"] * 15 + ["x"] * 15  # numbers in one chunk, text in the next
    path = tmp_path / f"d{suffix}"
    frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_parquet(path, index=False)
    out = StagedOutput(str(tmp_path / "out.parquet"), overwrite=False)
    digest = Digest()

    with open_input(str(path), classifier.contract.numeric) as table:
        schema = None
        for i, chunk in enumerate(table.chunks(10)):
            digest.update(chunk)
            scored = score_chunk(classifier, chunk, i * 10, BadRows(), skip_bad=False)
            schema = schema or output_schema(scored, classifier.contract, table.schema)
            out.append(scored.output, schema)
    out.publish()

    written = pd.read_parquet(tmp_path / "out.parquet")
    assert len(written) == 30 and written["note"].tolist() == frame["note"].tolist()
    if suffix == ".parquet":  # read whole, the same table has the same fingerprint
        assert digest.hexdigest() == data_digest(pd.read_parquet(path))
    assert pq.ParquetFile(tmp_path / "out.parquet").schema_arrow.field("x1").type == "double"


def test_an_existing_output_is_refused_and_a_discarded_one_leaves_nothing(tmp_path):
    (tmp_path / "old.csv").write_text("a\n1\n")

    with pytest.raises(InputError, match="exists; pass --overwrite"):
        StagedOutput(str(tmp_path / "old.csv"), overwrite=False)
    staged = StagedOutput(str(tmp_path / "new.csv"), overwrite=False)
    staged.append(pd.DataFrame({"a": [1]}), None)
    staged.discard()

    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.csv"]
    with pytest.raises(InputError, match="expected a .csv or .parquet file"):
        StagedOutput(str(tmp_path / "out.json"), overwrite=True)


def test_data_shipped_in_a_package_is_read_but_never_written(tmp_path):
    with open_input("package://palmerpenguins/data/penguins.csv", ["bill_length_mm"]) as table:
        rows = sum(len(chunk) for chunk in table.chunks(100))

    assert "species" in table.columns and rows == 344
    with pytest.raises(InputError, match="unsupported scheme 'package://'"):
        StagedOutput("package://palmerpenguins/data/out.csv", overwrite=True)
