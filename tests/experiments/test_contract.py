"""The data contract: hard checks on training data, inference, round trip, and later checks."""

import json

import numpy as np
import pandas as pd
import pytest

from experiments.contract import (
    MAX_CLASSES,
    MIN_ROWS,
    DataContract,
    check_against_contract,
    infer_contract,
    prepare_training_data,
)
from experiments.errors import InputError


def labelled_frame(labels: list) -> pd.DataFrame:
    """One row per label, with a numeric and a categorical feature."""
    n = len(labels)
    return pd.DataFrame(
        {"x": np.arange(n, dtype=float), "colour": ["red", "blue"] * (n // 2) + ["red"] * (n % 2),
         "label": labels}
    )


# --- prepare_training_data: hard checks ------------------------------------------------------


def test_missing_target_column_is_named():
    """Given data without the target column, then InputError names the target and the columns."""
    frame = labelled_frame(["a", "b"] * 30)

    with pytest.raises(InputError, match=r"target column 'species' is not in the data.*colour"):
        prepare_training_data(frame, "species", "classification", cv_folds=5)


def test_target_missing_in_every_row_is_rejected():
    """Given a target column that is all NaN, then InputError says it is missing in every row."""
    frame = labelled_frame([None] * 60)

    with pytest.raises(InputError, match="'label' is missing in every row"):
        prepare_training_data(frame, "label", "classification", cv_folds=5)


def test_target_only_frame_is_rejected():
    """Given only the target column, then InputError says there are no feature columns."""
    frame = pd.DataFrame({"label": ["a", "b"] * 30})

    with pytest.raises(InputError, match="no feature columns"):
        prepare_training_data(frame, "label", "classification", cv_folds=5)


def regression_frame(n_labelled: int, n_unlabelled: int = 0) -> pd.DataFrame:
    return pd.DataFrame(
        {"x": range(n_labelled + n_unlabelled),
         "label": list(np.linspace(0, 1, n_labelled)) + [None] * n_unlabelled}
    )


@pytest.mark.parametrize(
    ("n_labelled", "n_unlabelled"),
    [(MIN_ROWS - 1, 0), (MIN_ROWS - 1, 20)],
    ids=["too-few", "unlabelled-rows-do-not-count"],
)
def test_too_few_rows_is_rejected(n_labelled, n_unlabelled):
    """Given fewer than MIN_ROWS rows with a target, then InputError says too few rows."""
    frame = regression_frame(n_labelled, n_unlabelled)

    with pytest.raises(InputError, match=f"too few rows: {n_labelled} with a target value"):
        prepare_training_data(frame, "label", "regression", cv_folds=5)


def test_exactly_min_rows_is_enough():
    """Given exactly MIN_ROWS labelled rows, then the data pass unchanged."""
    prepared = prepare_training_data(regression_frame(MIN_ROWS), "label", "regression", 5)

    assert len(prepared) == MIN_ROWS


def test_rows_with_a_missing_target_are_dropped():
    """Given 60 rows of which 5 lack a target, then 55 rows come back, renumbered from 0."""
    labels = ["a", "b"] * 30
    for i in (0, 7, 13, 40, 59):
        labels[i] = None
    frame = labelled_frame(labels)

    prepared = prepare_training_data(frame, "label", "classification", cv_folds=5)

    assert len(prepared) == 55
    assert prepared["label"].notna().all()
    assert prepared.index.tolist() == list(range(55))


def test_class_with_too_few_rows_for_the_folds_is_rejected():
    """Given 5 folds (10 rows needed per class), then a class with 9 rows is named."""
    frame = labelled_frame(["common"] * 60 + ["rare"] * 9)

    with pytest.raises(
        InputError, match="class 'rare' of target 'label' has 9 rows; at least 10 are needed"
    ):
        prepare_training_data(frame, "label", "classification", cv_folds=5)


def test_class_with_two_rows_per_fold_is_enough():
    """Given 5 folds and a class with exactly 10 rows, then the data pass."""
    frame = labelled_frame(["common"] * 60 + ["rare"] * 10)

    prepared = prepare_training_data(frame, "label", "classification", cv_folds=5)

    assert prepared["label"].value_counts()["rare"] == 10


def test_single_class_is_rejected():
    """Given one class only, then InputError says the target has a single class."""
    frame = labelled_frame(["only"] * 60)

    with pytest.raises(InputError, match="'label' has a single class 'only'"):
        prepare_training_data(frame, "label", "classification", cv_folds=5)


def test_more_than_max_classes_is_rejected():
    """Given MAX_CLASSES + 1 distinct labels, then InputError suggests regression."""
    frame = labelled_frame([f"c{i}" for i in range(MAX_CLASSES + 1)])

    with pytest.raises(InputError, match=f"has {MAX_CLASSES + 1} distinct values; is the task "
                                         "regression"):
        prepare_training_data(frame, "label", "classification", cv_folds=2)


@pytest.mark.parametrize("labels", [["a", "b"] * 30, [True, False] * 30])
def test_non_numeric_regression_target_is_rejected(labels):
    """Given a text or boolean target for regression, then InputError says it is not numeric."""
    frame = labelled_frame(labels)

    with pytest.raises(InputError, match="'label' is not numeric"):
        prepare_training_data(frame, "label", "regression", cv_folds=5)


def test_duplicate_column_names_are_rejected():
    """Given two columns of the same name, then InputError says so."""
    frame = labelled_frame(["a", "b"] * 30)
    frame.columns = ["x", "x", "label"]

    with pytest.raises(InputError, match="duplicate column names"):
        prepare_training_data(frame, "label", "classification", cv_folds=5)


# --- infer_contract ---------------------------------------------------------------------------


@pytest.fixture
def training() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "age": [20, 35, 50, 65],
            "income": [1.5, None, 3.0, 2.5],
            "city": ["Oslo", "Rome", "Oslo", None],
            "member": [True, False, True, True],
            "label": ["yes", "no", "no", "yes"],
        }
    )


@pytest.fixture
def contract(training) -> DataContract:
    return infer_contract(training, "label", "classification")


def test_infer_contract_excludes_the_target_and_records_classes(contract):
    """Given a frame with a target, then the features exclude it and the classes are sorted."""
    assert contract.feature_names == ["age", "income", "city", "member"]
    assert contract.classes == ("no", "yes")


def test_infer_contract_splits_numeric_and_categorical(contract):
    """Given int, float, text and bool columns, then numbers are numeric; text and bool are not."""
    assert contract.numeric == ["age", "income"]
    assert contract.categorical == ["city", "member"]


def test_infer_contract_records_range_and_nullability(contract):
    """Given numeric columns, then min, max and whether NaN occurred are recorded."""
    age, income = contract.columns[0], contract.columns[1]

    assert (age.minimum, age.maximum, age.nullable) == (20.0, 65.0, False)
    assert (income.minimum, income.maximum, income.nullable) == (1.5, 3.0, True)


def test_infer_contract_records_sorted_categories(contract):
    """Given text and bool columns, then their distinct non-null values are recorded as text."""
    city, member = contract.columns[2], contract.columns[3]

    assert (city.categories, city.nullable) == (("Oslo", "Rome"), True)
    assert member.categories == ("False", "True")


def test_regression_contract_has_no_classes(training):
    """Given a regression task, then the contract records no classes."""
    contract = infer_contract(training.assign(label=range(4)), "label", "regression")

    assert contract.classes is None


def test_contract_round_trips_through_json(contract):
    """Given a contract, when written to JSON and read back, then it is equal."""
    again = DataContract.from_dict(json.loads(contract.to_json()))

    assert again == contract


def test_contract_with_an_all_null_text_column_round_trips():
    """Given a text column that was all null in training, when round-tripped, then it is equal."""
    frame = pd.DataFrame({"note": [None, None, None], "label": ["a", "b", "a"]})
    contract = infer_contract(frame, "label", "classification")

    assert DataContract.from_dict(json.loads(contract.to_json())) == contract


# --- check_against_contract -------------------------------------------------------------------


def test_matching_batch_is_clean(training, contract):
    """Given the training data itself, then the report is empty and usable."""
    report = check_against_contract(training, contract)

    assert report.usable
    assert (report.missing_columns, report.unexpected_columns) == ((), ())
    assert report.type_mismatches == report.unseen_categories == {}
    assert report.out_of_range == report.unexpected_nulls == {}


def test_missing_column_makes_the_batch_unusable(training, contract):
    """Given a batch without 'city', then it is reported missing and the batch is unusable."""
    report = check_against_contract(training.drop(columns="city"), contract)

    assert report.missing_columns == ("city",)
    assert not report.usable


def test_batch_without_the_target_is_still_usable(training, contract):
    """Given a batch to score (no target column), then nothing is missing."""
    report = check_against_contract(training.drop(columns="label"), contract)

    assert report.missing_columns == ()
    assert report.usable


def test_extra_column_is_reported_but_usable(training, contract):
    """Given a batch with a new column, then it is listed as unexpected and still usable."""
    report = check_against_contract(training.assign(extra=1), contract)

    assert report.unexpected_columns == ("extra",)
    assert report.usable


def test_unseen_categories_are_counted(training, contract):
    """Given two rows with a city not seen in training, then 2 unseen values are counted."""
    batch = training.assign(city=["Oslo", "Paris", "Lima", None])

    report = check_against_contract(batch, contract)

    assert report.unseen_categories == {"city": 2}
    assert report.usable


def test_out_of_range_values_are_counted(training, contract):
    """Given one age below and two above the training range, then 3 are out of range."""
    batch = training.assign(age=[5, 35, 70, 99])

    report = check_against_contract(batch, contract)

    assert report.out_of_range == {"age": 3}
    assert report.usable


def test_text_in_a_numeric_column_is_a_type_mismatch(training, contract):
    """Given text in the numeric 'age' column, then it is a type mismatch and unusable."""
    batch = training.assign(age=["20", "old", "50", "n/a"])

    report = check_against_contract(batch, contract)

    assert report.type_mismatches == {"age": "2 non-numeric values"}
    assert not report.usable


def test_nulls_in_a_column_without_nulls_are_reported(training, contract):
    """Given NaN in 'age' (never null in training), then the nulls are counted; 'income' is fine."""
    batch = training.assign(age=[None, 30, None, 40], income=[None] * 4)

    report = check_against_contract(batch, contract)

    assert report.unexpected_nulls == {"age": 2}
    assert report.usable


def test_numeric_column_all_null_in_training_can_be_checked():
    """Given a numeric column that was all NaN in training, when checked, then no crash."""
    frame = pd.DataFrame({"score": [np.nan] * 3, "label": ["a", "b", "a"]})
    contract = infer_contract(frame, "label", "classification")

    report = check_against_contract(pd.DataFrame({"score": [1.0, 2.0]}), contract)

    assert report.out_of_range == {}
