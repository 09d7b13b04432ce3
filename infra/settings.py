"""The project's own knobs, read once where the program is assembled (the CLI)."""

from pathlib import Path
from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Where the platform keeps its state and which ports it binds.

    MLflow and Prefect keep reading their own variables (MLFLOW_TRACKING_URI,
    PREFECT_API_URL); these settings only say where *our* services live.
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
