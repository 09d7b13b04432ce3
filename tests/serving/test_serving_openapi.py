"""The OpenAPI description written from a data contract (no servers)."""

import jsonschema
import pytest
from fastapi.openapi.models import OpenAPI
from synthetic import binary_frame, regression_frame

from experiments.contract import infer_contract
from serving.openapi import describe_api, example_record


@pytest.fixture(scope="module")
def classifier():
    return infer_contract(binary_frame(n=200, seed=3), "label", "classification")


def test_every_column_is_typed_from_the_contract(classifier):
    document = describe_api("m", "2", classifier, 100, 1000, needs_token=False)
    record = document["components"]["schemas"]["Record"]

    assert list(record["properties"]) == classifier.feature_names
    assert record["required"] == classifier.feature_names and record["additionalProperties"] is False
    for column in classifier.columns:
        field = record["properties"][column.name]
        if column.kind == "numeric":
            assert field["type"] == ["number", "null"]
            assert (field["minimum"], field["maximum"]) == (column.minimum, column.maximum)
        else:
            assert field["type"] == ["string", "null"]
            assert field["enum"] == [*column.categories, None]


def test_the_document_is_openapi_3_and_its_record_schema_checks_records(classifier):
    """FastAPI's own OpenAPI model reads the document; as JSON Schema, the record schema takes
    the example and the training data's records, and refuses an unknown category, a value
    below the range, text in a numeric column and an unknown field."""
    document = describe_api("m", "2", classifier, 100, 1000, needs_token=True)
    OpenAPI.model_validate(document)
    record = jsonschema.Draft202012Validator(document["components"]["schemas"]["Record"])
    rows = binary_frame(n=200, seed=3).drop(columns="label").astype(object)
    rows = rows.where(rows.notna(), None).to_dict("records")
    x1 = next(c for c in classifier.columns if c.name == "x1")

    assert all(record.is_valid(row) for row in [example_record(classifier), *rows])
    for change in ({"colour": "purple"}, {"x1": x1.minimum - 1}, {"x1": "high"}, {"shoe_size": 42}):
        assert not record.is_valid({**rows[0], **change}), change


def test_a_regression_answer_is_numbers_without_probabilities():
    contract = infer_contract(regression_frame(n=120), "y", "regression")

    schemas = describe_api("r", "1", contract, 100, 1000, needs_token=False)["components"]["schemas"]

    assert schemas["PredictAnswer"]["properties"]["predictions"]["items"]["type"] == "number"
    assert "probabilities" not in schemas["PredictAnswer"]["properties"]
    assert schemas["FeedbackRequest"]["properties"]["labels"]["items"]["type"] == "number"
