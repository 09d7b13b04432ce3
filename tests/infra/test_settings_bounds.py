"""Numeric settings refuse what cannot mean anything, in one line naming the variable."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from infra.errors import PlatformError
from infra.settings import Settings, load_settings


def _numeric_fields() -> list[str]:
    return [name for name, field in Settings.model_fields.items()
            if field.annotation in (int, float)]


def _validated() -> set[str]:
    """Fields a validator of their own checks (heartbeat_silence_s: at least two beats)."""
    return {field for validator in Settings.__pydantic_decorators__.field_validators.values()
            for field in validator.info.fields}


def _bounded_below(name: str) -> bool:
    return any(getattr(m, "ge", None) is not None or getattr(m, "gt", None) is not None
               for m in Settings.model_fields[name].metadata)


def test_every_numeric_setting_has_a_lower_bound():
    unbounded = [name for name in _numeric_fields()
                 if name not in _validated() and not _bounded_below(name)]

    assert _numeric_fields() and unbounded == []


@pytest.mark.parametrize("name, value", [
    ("MLOPS_SERVE_KEEP_ALIVE_S", "-5"), ("MLOPS_SERVE_MAX_IN_FLIGHT", "0"),
    ("MLOPS_MLFLOW_PORT", "70000"), ("MLOPS_SERVE_PORT", "0"), ("MLOPS_TRAFFIC_FLUSH_S", "0"),
    ("MLOPS_SERVE_BATCH_WAIT_MS", "-1"), ("MLOPS_START_TIMEOUT_S", "-90"),
])
def test_a_value_below_its_bound_is_refused_with_its_name(monkeypatch, tmp_path: Path, name, value):
    monkeypatch.setenv(name, value)

    with pytest.raises(PlatformError) as refused:
        load_settings(tmp_path / ".env")

    assert str(refused.value).startswith(f"{name}: ") and "\n" not in str(refused.value)


def test_the_defaults_and_zero_waits_are_accepted(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("MLOPS_SERVE_BATCH_WAIT_MS", "0")
    monkeypatch.setenv("MLOPS_SERVE_SHADOW_WAIT_MS", "0")

    settings = load_settings(tmp_path / ".env")

    assert settings.serve_batch_wait_ms == 0 and settings.serve_keep_alive_s == 75


def test_the_cli_says_it_in_one_line_and_exits_non_zero(tmp_path: Path):
    env = {**os.environ, "MLOPS_SERVE_KEEP_ALIVE_S": "-5", "MLOPS_HOME": str(tmp_path / "home")}
    done = subprocess.run([sys.executable, "-m", "flows.cli", "status"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)

    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "error: MLOPS_SERVE_KEEP_ALIVE_S: Input should be greater than or equal to 1"]
