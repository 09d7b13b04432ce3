"""The project's own knobs, read once where the program is assembled (the CLI)."""

from pathlib import Path
from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Where the platform keeps its state, which ports it binds, and (full profile) which
    PostgreSQL server and S3 endpoint it uses.

    MLflow, Prefect and boto3 keep reading their own variables (MLFLOW_TRACKING_URI,
    PREFECT_API_URL, AWS_*); these settings only say where *our* services live.
    """

    model_config = SettingsConfigDict(
        env_prefix="MLOPS_", env_file=".env", extra="ignore", frozen=True
    )

    home: Path = Path(".mlops")
    host: str = "127.0.0.1"
    mlflow_port: int = 5000
    prefect_port: int = 4200
    runner_port: int = 4280
    profile: Literal["local", "full"] = "local"
    start_timeout_s: float = 90.0
    # The full profile. The server URL names no database: each store gets its own.
    database_url: str = "postgresql://postgres@127.0.0.1:5432"
    database_prefix: str = "mlops"
    s3_endpoint: str = ""  # empty: `up --profile full` starts SeaweedFS on s3_port
    s3_port: int = 8333
    bucket: str = "mlops"
    work_pool: str = "mlops"
    # Where Optuna keeps studies: a database URL (the full profile sets it); empty means a
    # journal file under home.
    optuna_storage: str = ""
