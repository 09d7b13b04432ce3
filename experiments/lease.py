"""Who owns a study: a lease in the study's user attributes, renewed while its training runs.

A lease lives in the study's storage (a journal file or PostgreSQL), so it is seen from
every process and machine that shares the storage. It lasts LEASE_S and is renewed every
RENEW_S: four renewals a lease, so three missed in a row (a slow storage write, a busy
machine) do not lose it, while a killed training's study can be resumed a minute later.
Expiry compares wall clocks, which NTP keeps within far less than a lease.

Taking over an expired lease is a race of its own (two trainings may both find it
expired); it is settled by creating a marker study, which every storage does atomically.
"""

import logging
import os
import socket
import threading
import time
import uuid

import optuna

log = logging.getLogger(__name__)

LEASE_S = 60.0
RENEW_S = 15.0
OWNER = "owner"
LEASE_UNTIL = "lease_until"
GENERATION = "lease_generation"


def new_owner() -> str:
    """A name for this training that no other process on any machine will use."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def is_live(attrs: dict, now: float | None = None) -> bool:
    """Whether a study's lease has not run out yet."""
    return float(attrs.get(LEASE_UNTIL, 0.0)) > (time.time() if now is None else now)


def grant(storage, study_id: int, owner: str, generation: int = 0) -> None:
    """Give the study to `owner` for LEASE_S; the owner is written before the expiry."""
    storage.set_study_user_attr(study_id, OWNER, owner)
    storage.set_study_user_attr(study_id, GENERATION, generation)
    storage.set_study_user_attr(study_id, LEASE_UNTIL, time.time() + LEASE_S)


def take_over(storage, study_name: str, attrs: dict, owner: str) -> bool:
    """Whether `owner` won the study whose lease ran out; of several callers only one wins."""
    generation = int(attrs.get(GENERATION, 0)) + 1
    try:
        # Lease markers are named apart from attempts, so no listing of attempts sees them.
        optuna.create_study(study_name=f"lease:{study_name}:{generation}", storage=storage)
    except optuna.exceptions.DuplicatedStudyError:
        return False
    grant(storage, storage.get_study_id_from_name(study_name), owner, generation)
    return True


def release(storage, study_name: str, owner: str) -> None:
    """End `owner`'s lease at once, so the next training may resume the study without waiting;
    a lease another training has taken over is left alone."""
    study_id = storage.get_study_id_from_name(study_name)
    if storage.get_study_user_attrs(study_id).get(OWNER) == owner:
        storage.set_study_user_attr(study_id, LEASE_UNTIL, 0.0)


class LeaseKeeper:
    """Renews a study's lease every RENEW_S on a background thread while the block runs."""

    def __init__(self, storage, study_name: str, owner: str, renew_s: float = RENEW_S):
        self._storage, self._name, self._owner, self._renew_s = storage, study_name, owner, renew_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"lease-{study_name}", daemon=True)

    def __enter__(self) -> "LeaseKeeper":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        while not self._stop.wait(self._renew_s):
            try:
                self.renew()
            except Exception:  # noqa: BLE001 - a storage hiccup must not kill the training
                log.warning("could not renew the lease on study %s", self._name, exc_info=True)

    def renew(self) -> bool:
        """Extend the lease; False (and no write) when another training has taken it over."""
        study_id = self._storage.get_study_id_from_name(self._name)
        if self._storage.get_study_user_attrs(study_id).get(OWNER) != self._owner:
            log.warning("study %s was taken over by another training", self._name)
            self._stop.set()
            return False
        self._storage.set_study_user_attr(study_id, LEASE_UNTIL, time.time() + LEASE_S)
        return True
