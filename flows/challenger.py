"""The challenger on live labels: `mlops compare`, and the scheduled check's promotion on
live evidence (`promotion.live_evidence: true`).

The comparison is monitoring/challenger.py's; this module finds the two versions, their
models, the spec and the live rows, and makes the move as any other move of `champion` is
made: under the model's promotion lock, recorded in its history, announced, with the
monitoring schedule following.
"""

import logging
from datetime import UTC, datetime, timedelta

from mlflow.tracking import MlflowClient

from experiments.contract import DataContract
from experiments.errors import InputError
from flows import locks
from flows.lifecycle import Moved, announce, follow, require_model
from infra.settings import process_settings
from monitoring.challenger import Contender, Incomparable, LiveComparison, compare_live, paired_rows
from monitoring.champion import load_run_spec
from monitoring.traffic import open_files, read_labelled, with_challenger
from registry.champion import Move, get_challenger, get_champion, move_champion
from registry.loading import UnsafeModel, load_registered

log = logging.getLogger(__name__)

LIVE_EVIDENCE = "live evidence"  # who moved `champion` (mlops.promoted_by, history's `by`)


def compare(client: MlflowClient, name: str) -> LiveComparison:
    """NAME's champion against its challenger on the live records both scored that got
    labels (received within monitoring.feedback_days); InputError without the two."""
    require_model(client, name)
    champion, challenger = get_champion(client, name), get_challenger(client, name)
    if champion is None:
        raise InputError(f"{name} has no champion to compare")
    if challenger is None:
        raise InputError(f"{name} has no challenger: a version gets `challenger` when the gate "
                         "does not promote it")
    return _compare(client, name, str(champion.version), str(challenger.version),
                    load_run_spec(client, champion.run_id))


def _compare(client: MlflowClient, name: str, champion: str, challenger: str, spec) -> LiveComparison:
    sides = [_contender(client, name, version) for version in (champion, challenger)]
    since = datetime.now(UTC) - timedelta(days=spec.monitoring.feedback_days)
    files = open_files(process_settings().traffic_base)
    labelled = with_challenger(files, name, read_labelled(files, name, spec.data.target, since))
    try:
        return compare_live(paired_rows(labelled, champion, challenger), *sides, spec)
    except Incomparable as error:
        raise InputError(f"cannot compare {name} versions {champion} and {challenger}: {error}") from error


def _contender(client: MlflowClient, name: str, version: str) -> Contender:
    try:
        loaded = load_registered(client, name, version)
    except UnsafeModel as error:
        raise InputError(f"cannot compare: {error}") from error
    return Contender(version, loaded.pipeline, DataContract.from_dict(loaded.metadata["mlops_contract"]))


def promote_on_live_evidence(client: MlflowClient, name: str) -> dict | None:
    """With `promotion.live_evidence` in the champion's spec and a challenger: the comparison
    (as `mlops compare` gives it) and whether the challenger took `champion`; None otherwise."""
    champion, challenger = get_champion(client, name), get_challenger(client, name)
    if champion is None or challenger is None:
        return None
    spec = load_run_spec(client, champion.run_id)
    if not spec.promotion.live_evidence:
        return None
    champion, challenger = str(champion.version), str(challenger.version)
    comparison = _compare(client, name, champion, challenger, spec)
    moved = _move(client, name, comparison) if comparison.wins else None
    if moved is not None:
        for note in filter(None, (announce(client, moved, "live_evidence"), follow(client, name))):
            log.warning("%s: %s", name, note)
    return {**comparison.as_json(name), "promoted": moved is not None}


def _move(client: MlflowClient, name: str, comparison: LiveComparison) -> Moved | None:
    """The challenger takes `champion`, if both aliases are still where they were compared."""
    with locks.held(locks.promotion_lock(name)):
        champion, challenger = get_champion(client, name), get_challenger(client, name)
        if (None in (champion, challenger) or str(champion.version) != comparison.champion_version
                or str(challenger.version) != comparison.challenger_version):
            log.info("%s: champion or challenger moved during the comparison; not promoting", name)
            return None
        reason = f"live evidence: {comparison.reason}"
        move_champion(client, name, comparison.challenger_version,
                      Move(LIVE_EVIDENCE, reason, comparison.champion_version))
    return Moved(name, comparison.challenger_version, comparison.champion_version, LIVE_EVIDENCE, reason)
