"""The fast column preparation is bit-for-bit the pipeline's own, or steps aside."""

import numpy as np
import pytest
from synthetic import binary_frame, regression_frame

from experiments.contract import infer_contract
from experiments.pipelines import build_pipeline, feature_frame
from serving.prepare import fast_prepare


def served(frame, contract):
    """Records as a server gets them: nulls in both kinds of column, an unseen category,
    and a numeric column missing in every record."""
    x = feature_frame(frame, contract.numeric, contract.categorical).reset_index(drop=True)
    x.loc[::7, contract.categorical[0]] = "never seen in training"
    x.loc[::5, contract.categorical[0]] = np.nan
    x.loc[::3, contract.numeric[0]] = np.nan
    x[contract.numeric[-1]] = np.nan
    return x


@pytest.mark.parametrize(("task", "family", "data", "target"), [
    ("classification", "random_forest", binary_frame, "label"),
    ("classification", "logistic_regression", binary_frame, "label"),
    ("classification", "hist_gradient_boosting", binary_frame, "label"),
    ("regression", "ridge", regression_frame, "y"),
])
def test_fast_preparation_is_the_transformers_own(task, family, data, target):
    frame = data(n=200, seed=3)
    contract = infer_contract(frame, target, task)
    pipeline = build_pipeline(task, family, {}, contract.numeric, contract.categorical, 0)
    pipeline.fit(feature_frame(frame, contract.numeric, contract.categorical), frame[target])
    prepare = pipeline.named_steps["prepare"]
    x = served(data(n=120, seed=4), contract)

    fast = fast_prepare(prepare, x)

    assert fast is not None
    own = prepare.transform(x)
    assert fast.dtype == own.dtype and fast.shape == own.shape
    assert (fast == own).all()


def test_other_steps_are_left_to_scikit_learn():
    frame = binary_frame(n=200, seed=3)
    contract = infer_contract(frame, "label", "classification")
    pipeline = build_pipeline("classification", "logistic_regression", {"fe.transform": "power"},
                              contract.numeric, contract.categorical, 0)
    pipeline.fit(feature_frame(frame, contract.numeric, contract.categorical), frame["label"])

    assert fast_prepare(pipeline.named_steps["prepare"], served(frame, contract)) is None
