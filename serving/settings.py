"""The serving knobs, beside the platform's own (same MLOPS_ prefix, same .env file)."""

from pathlib import Path

from infra.settings import Settings


class ServingSettings(Settings):
    """What `mlops serve` and the live-traffic readers need on top of the platform settings."""

    serve_host: str = "127.0.0.1"
    serve_port: int = 8080
    serve_reload_s: float = 5.0
    serve_max_records: int = 10_000
    serve_max_body_bytes: int = 1 << 20
    serve_batch_wait_ms: float = 1.0
    serve_feedback_ids: int = 100_000
    traffic_uri: str | None = None
    traffic_flush_s: float = 5.0
    traffic_flush_rows: int = 50_000

    @property
    def traffic_base(self) -> str:
        """MLOPS_TRAFFIC_URI (a path or s3://bucket/prefix), else <MLOPS_HOME>/traffic."""
        return self.traffic_uri or str(Path(self.home, "traffic").resolve())
