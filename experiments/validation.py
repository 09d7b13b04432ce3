"""The validate stage: read the data, apply the hard checks, infer the data contract.

Kept free of MLflow and Prefect so the CLI can reject bad input in a second or two.
"""

from dataclasses import dataclass

import pandas as pd

from experiments.contract import DataContract, infer_contract, prepare_training_data
from experiments.data import data_digest, load_table
from experiments.spec import ExperimentSpec


@dataclass(frozen=True)
class Dataset:
    frame: pd.DataFrame
    contract: DataContract
    digest: str
    source: str


def load_dataset(spec: ExperimentSpec) -> Dataset:
    """Read the spec's data, apply the hard checks and infer the data contract."""
    raw = load_table(spec.data.source)
    frame = prepare_training_data(raw, spec.data.target, spec.task, spec.tuning.cv_folds)
    contract = infer_contract(frame, spec.data.target, spec.task)
    return Dataset(frame, contract, data_digest(frame), spec.data.source)
