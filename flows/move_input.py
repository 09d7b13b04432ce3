"""What a person types to move `champion`, checked before the platform is contacted.

Imports no Prefect: its client reads the platform's address once, when first imported."""

from experiments.errors import InputError

MAX_REASON = 1000


def require_reason(reason: str | None, required: bool = True) -> str | None:
    """The reason as given, stripped; refused when empty or too long to keep."""
    if reason is None and not required:
        return None
    if reason is None or not reason.strip():
        raise InputError("--reason must say why champion moves (it is recorded with the move)")
    if len(reason) > MAX_REASON:
        raise InputError(f"--reason is {len(reason)} characters long; keep it to {MAX_REASON}")
    return reason.strip()


def require_version_number(version: str) -> str:
    if not version.isdigit():
        raise InputError(f"version must be a number such as 3, not {version!r}")
    return str(int(version))
