"""Checking JSON records against a contract, per request within a batch."""

import numpy as np
import pandas as pd
import pytest
from synthetic import binary_frame

from experiments.contract import infer_contract
from experiments.pipelines import feature_frame
from serving.records import check_batch, check_labels


@pytest.fixture(scope="module")
def contract():
    return infer_contract(binary_frame(n=200, seed=3), "label", "classification")


def record(**changes):
    return {"x1": 0.5, "x2": -1.0, "noise": 0.1, "colour": "red", **changes}


def test_good_records_become_the_model_input_of_training(contract):
    """Given records with nulls in both kinds of column, the model input is what
    feature_frame makes of the same table (NaN for null), in request order."""
    requests = [[record(), record(noise=None)], [record(colour=None, x1=3)]]

    check = check_batch(requests, contract)

    assert check.accepted == [0, 1] and check.sizes == [2, 1] and check.rejected == {}
    expected = feature_frame(pd.DataFrame([r for rs in requests for r in rs]),
                             contract.numeric, contract.categorical)
    pd.testing.assert_frame_equal(check.features, expected)
    null_text = check.features.loc[2, "colour"]
    assert np.isnan(check.features.loc[1, "noise"])
    assert isinstance(null_text, float) and np.isnan(null_text)  # NaN, which the imputer fills


@pytest.mark.parametrize("changes", [{"noise": None}, {"colour": None}, {"x1": 2}])
def test_a_column_of_one_kind_throughout_is_feature_frames_too(contract, changes):
    """Null in every record (an object column), or whole numbers only: the same input."""
    requests = [[record(**changes), record(**{"colour": "mauve", **changes})], [record(**changes)]]

    check = check_batch(requests, contract)

    expected = feature_frame(pd.DataFrame([r for rs in requests for r in rs]),
                             contract.numeric, contract.categorical)
    pd.testing.assert_frame_equal(check.features, expected)
    assert check.unseen_categories == ({"colour": 1} if "colour" not in changes else {})


@pytest.mark.parametrize(
    ("bad", "field", "fragment"),
    [({"x1": "1.5"}, "x1", 'expected a number or null, got text "1.5"'),
     ({"x1": True}, "x1", "got a boolean true"),
     ({"x2": [1]}, "x2", "got a list"),
     ({"colour": 3}, "colour", "expected text or null, got a number 3"),
     ({"colour": {"a": 1}}, "colour", "got an object")],
)
def test_a_value_of_the_wrong_type_rejects_its_request_only(contract, bad, field, fragment):
    """Given three requests, the second with a bad value in its record 1, only the second is
    refused, naming the record index and the field; the others are predicted."""
    requests = [[record()], [record(), record(**bad)], [record(x1=7.0)]]

    check = check_batch(requests, contract)

    assert check.accepted == [0, 2] and check.sizes == [1, 1]
    problem = check.rejected[1]
    assert (problem.record, problem.field) == (1, field)
    assert fragment in problem.message
    assert check.features["x1"].tolist() == [0.5, 7.0]


def test_the_first_bad_record_of_a_request_is_named(contract):
    requests = [[record(), record(colour=1), record(x1="a")]]

    assert check_batch(requests, contract).rejected[0].record == 1


@pytest.mark.parametrize(
    ("bad_record", "field", "fragment"),
    [({"x1": 1.0, "noise": 0.1, "colour": "red"}, "x2", "missing"),
     ({**record(), "extra": 1, "zzz": 2}, "extra", "unknown field(s): extra, zzz"),
     ({**record(), "label": "yes"}, "label", "unknown field(s): label"),
     ([1, 2, 3, 4], "", "expected an object of feature values, got a list")],
)
def test_missing_or_unknown_fields_are_refused(contract, bad_record, field, fragment):
    check = check_batch([[record(), bad_record]], contract)

    assert check.accepted == [] and len(check.features) == 0
    assert (check.rejected[0].record, check.rejected[0].field) == (1, field)
    assert fragment in check.rejected[0].describe()


def test_unseen_categories_pass_and_are_counted(contract):
    check = check_batch([[record(colour="purple"), record(colour="purple"), record(colour=None)]],
                        contract)

    assert check.rejected == {} and check.unseen_categories == {"colour": 2}


def test_a_column_of_only_nulls_is_allowed(contract):
    check = check_batch([[record(x1=None, colour=None)]], contract)

    assert check.rejected == {}
    assert check.features["x1"].dtype == "float64" and np.isnan(check.features["x1"].iloc[0])


@pytest.mark.parametrize(
    ("labels", "ok"),
    [(["yes", "no"], True), (["yes", "maybe"], False), ([1, "no"], False), ([None, "no"], False)],
)
def test_classification_labels_must_be_classes(contract, labels, ok):
    assert (check_labels(labels, contract) is None) == ok


def test_regression_labels_must_be_numbers():
    from synthetic import regression_frame

    contract = infer_contract(regression_frame(n=100), "y", "regression")

    assert check_labels([1, 2.5], contract) is None
    problem = check_labels([1.0, "2"], contract)
    assert problem.record == 1 and "expected a number" in problem.message
