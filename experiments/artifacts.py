"""Where a training run keeps what monitoring, retraining and serving read back later."""

REFERENCE_ARTIFACT = "reference/train.parquet"
CONTRACT_ARTIFACT = "contract/data_contract.json"
SPEC_ARTIFACT = "spec/spec.yaml"
