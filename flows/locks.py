"""A lock held across processes and machines: a Prefect global concurrency limit of one slot.

The Prefect server grants the slot atomically and keeps it under a lease that the holder's
process renews, so a training killed while holding it blocks the others for LEASE_S at
most, not for good.
"""

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

from infra.errors import PlatformError

LEASE_S = 60.0  # renewed by Prefect every 45 s while held
WAIT_S = 600.0  # a lock that cannot be had in ten minutes is a fault to report, not to wait out


def promotion_lock(model: str) -> str:
    """The lock under which a model's champion is read, compared and replaced."""
    return f"mlops-promote-{model}"


def ensure_lock(name: str) -> None:
    """Create the one-slot limit if missing; refuse one that a person widened or switched off.
    Read first: a create of one that exists is a failed write on the server (on SQLite, a
    write lock taken; in its log, an error with a traceback), for every promotion."""
    with get_client(sync_client=True) as client:
        try:
            limit = client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            try:
                client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(name=name, limit=1))
            except ObjectAlreadyExists:
                pass  # another training created it meanwhile
            limit = client.read_global_concurrency_limit_by_name(name)
    if limit.limit != 1 or not limit.active:
        raise PlatformError(
            f"the Prefect concurrency limit {name} must be active with 1 slot "
            f"(it has {limit.limit}, active={limit.active}): set it back, or delete it"
        )


@contextmanager
def held(name: str) -> Iterator[None]:
    """Hold the lock `name` while the block runs; no other holder anywhere meanwhile."""
    ensure_lock(name)
    with ExitStack() as stack:
        try:
            # strict: a limit that vanished must stop the block, not let it run unguarded.
            stack.enter_context(concurrency(name, occupy=1, timeout_seconds=WAIT_S,
                                            lease_duration=LEASE_S, strict=True))
        except TimeoutError as error:
            raise PlatformError(
                f"the lock {name} was not free within {WAIT_S:.0f} s: another promotion of "
                "this model still holds it (Prefect UI: Concurrency > Global); try again later"
            ) from error
        yield
