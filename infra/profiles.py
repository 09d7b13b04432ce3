"""Which platform a command means: the one a previous `up` recorded, else the settings'."""

import ipaddress
from collections.abc import Mapping

from infra.errors import PlatformError
from infra.full import full_platform, settings_from_state
from infra.local import local_platform
from infra.platform import Platform
from infra.secrets import require
from infra.services import read_state, running_recorded
from infra.settings import Settings

PROFILES = ("local", "full")


def chosen_profile(settings: Settings, profile: str | None = None) -> str:
    state = read_state(settings.home) or {}
    chosen = profile or state.get("profile") or settings.profile
    if chosen not in PROFILES:
        raise PlatformError(f"unknown profile '{chosen}'; use local or full")
    return chosen


def require_no_other_profile(settings: Settings, profile: str | None) -> None:
    """One line when `up` asks for one profile while the other runs in the same home: the
    two would share ports and pid files, and `up` would take the other's processes as its own."""
    state = read_state(settings.home) or {}
    running = running_recorded(settings.home)
    if profile and state.get("profile") not in (None, profile) and running:
        raise PlatformError(
            f"the {state['profile']} profile is running in {settings.home} ({', '.join(running)} at "
            f"{state.get('mlflow_url', '?')}); stop it with `mlops down`, then "
            f"`mlops up --profile {profile}`, or give this one its own MLOPS_HOME")


def require_loopback(host: str, allow_remote: bool) -> None:
    """One line unless the services bind to this machine only, or the user said otherwise:
    the local profile has no authentication, and no profile closes every port yet."""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not allow_remote:
        raise PlatformError(
            f"MLOPS_HOST={host} would let other machines reach the platform's services; use "
            "127.0.0.1, or pass --allow-remote to `mlops up` if that is what you want")


def platform_from_settings(settings: Settings, profile: str | None = None,
                           secrets: Mapping[str, str] | None = None) -> Platform:
    """The platform `up` would start, or the one a previous `up` recorded in MLOPS_HOME.
    The full profile needs its secrets: given, or else from the settings."""
    state = read_state(settings.home) or {}
    chosen = chosen_profile(settings, profile)
    recorded = {name: svc.get("port") for name, svc in state.get("services", {}).items()}
    ports = {
        "mlflow": recorded.get("mlflow") or settings.mlflow_port,
        "prefect": recorded.get("prefect") or settings.prefect_port,
        "runner": recorded.get("runner") or settings.runner_port,
        "worker": recorded.get("worker") or settings.worker_port,
        "s3": recorded.get("s3") or settings.s3_port,
        "evidently": recorded.get("evidently") or settings.evidently_port,
    }
    if chosen == "local":
        return local_platform(settings.home, settings.host, ports["mlflow"], ports["prefect"],
                              ports["runner"], ports["evidently"])
    if state.get("profile") == "full":
        settings = settings_from_state(settings, state)
    return full_platform(settings, ports, secrets if secrets is not None else require(settings))
