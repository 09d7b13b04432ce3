"""Promotion on live evidence (`promotion.live_evidence: true`): the scheduled check gives
`champion` to the challenger when live labels show a significant win (flows/compare.py).

The move is made as any other move of `champion`: under the model's promotion lock (both
aliases checked again there), recorded in its history and on the versions, announced, and
followed by the monitoring schedule. In `promotion.mode: approve` a live win moves nothing:
the challenger waits for a person as a gate winner does (flows/approval.py), asked once.
"""

import logging

from mlflow.tracking import MlflowClient

from experiments.spec import ExperimentSpec
from flows import locks
from flows.compare import compare_versions
from flows.lifecycle import Moved, announce, follow
from monitoring.challenger import LiveComparison
from monitoring.champion import load_run_spec
from registry.approval import AWAITING, STATE_TAG
from registry.champion import Move, get_challenger, get_champion, move_champion

log = logging.getLogger(__name__)

LIVE_EVIDENCE = "live evidence"  # who moved `champion` (mlops.promoted_by, history's `by`)


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
    comparison = compare_versions(client, name, champion, challenger, spec)
    if comparison.wins and spec.promotion.mode == "approve":
        return {**comparison.as_json(name), "promoted": False,
                "awaiting_approval": _ask_approval(client, name, spec, comparison)}
    moved = _move(client, name, comparison) if comparison.wins else None
    if moved is not None:
        for note in filter(None, (announce(client, moved, "live_evidence"), follow(client, name))):
            log.warning("%s: %s", name, note)
    return {**comparison.as_json(name), "promoted": moved is not None}


def _ask_approval(client: MlflowClient, name: str, spec: ExperimentSpec,
                  comparison: LiveComparison) -> bool:
    """The challenger's approval run, started unless one was asked for it before (a person
    who rejected it is not asked again at every check); whether it waits for a decision."""
    from flows.approval import ApproveParameters, request_approval

    asked = client.get_model_version(name, comparison.challenger_version).tags.get(STATE_TAG)
    if asked is not None:
        return asked == AWAITING
    request_approval(ApproveParameters(
        model=name, version=comparison.challenger_version,
        gate_reason=f"live evidence: {comparison.reason}",
        timeout_hours=spec.promotion.approval_timeout_hours, trigger="live_evidence"))
    return True


def _move(client: MlflowClient, name: str, comparison: LiveComparison) -> Moved | None:
    """The challenger takes `champion`, if both aliases are still where they were compared."""
    with locks.held(locks.promotion_lock(name)):
        champion, challenger = get_champion(client, name), get_challenger(client, name)
        if (champion is None or challenger is None
                or str(champion.version) != comparison.champion_version
                or str(challenger.version) != comparison.challenger_version):
            log.info("%s: champion or challenger moved during the comparison; not promoting", name)
            return None
        reason = f"live evidence: {comparison.reason}"
        move_champion(client, name, comparison.challenger_version,
                      Move(LIVE_EVIDENCE, reason, comparison.champion_version))
    return Moved(name, comparison.challenger_version, comparison.champion_version, LIVE_EVIDENCE, reason)
