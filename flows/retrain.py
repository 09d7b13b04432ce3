"""The retraining flow: what the `mlops.drift.detected` event starts.

It is the training flow, tagged `mlops.trigger=drift` (or `quality`) with the check that
caused it, on the champion's spec with the drifted data added when it carries labels, its
search warm-started from the champion's parameters; the same champion/challenger gate decides.

A retraining for degraded live quality always adds the labelled live records (feedback of the
last `monitoring.feedback_days`): when the inputs stayed put and the answers changed, the
spec's data alone would teach the same model again.
"""

import io
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import yaml
from mlflow.tracking import MlflowClient
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field, field_validator

from experiments.data import load_table
from flows.naming import name_this_run
from flows.preflight import require_champion
from flows.recovery import label_this_process
from flows.train import TrainParameters, train
from infra.settings import process_settings
from monitoring.champion import load_champion_data
from monitoring.record import record_retraining, retraining_state
from monitoring.traffic import open_files, read_labelled

TRIGGERS = ("drift", "quality")


class RetrainParameters(BaseModel):
    """Filled in by the drift event's payload, or by hand from the Prefect UI."""

    model: str = Field("penguins", description="The registered model to retrain")
    monitoring_run_id: str | None = Field(None, description="The drift check that asked for it")
    current: str | None = Field(
        None, description="The drifted data, added to training if labelled; empty: live traffic")
    # Text rather than an enum: the server checks a triggered run's parameters against the
    # schema before this model sees them, and an event without a trigger renders it as "".
    trigger: str = Field(
        "drift", description="What the check found: drift (data drift), or quality (degraded "
        "live quality, which adds the labelled live records to training)")

    @field_validator("trigger", mode="before")
    @classmethod
    def _known_trigger(cls, value):
        value = value or "drift"
        if value not in TRIGGERS:
            raise ValueError(f"trigger must be one of {', '.join(TRIGGERS)}, got {value!r}")
        return value


@task(cache_policy=NO_CACHE)
def prepare(params: RetrainParameters) -> TrainParameters:
    """Write the spec (and the combined data) this retraining trains on."""
    client = MlflowClient()
    require_champion(client, params.model, purpose="retrain")
    champion = load_champion_data(client, params.model)
    spec = champion.spec
    settings = process_settings()
    # The spec is read by this process only; the combined data is named by the new version's
    # spec, so it goes where every later reader can reach it (the bucket, in the full profile).
    folder = settings.home.resolve() / "retrain"
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    logger = get_run_logger()
    columns = [*champion.contract.feature_names, spec.data.target]
    extra = []
    # An empty `current` is a check of live traffic: its labels, if any, come as feedback.
    if params.current:
        current = load_table(params.current)
        if spec.data.target in current.columns:
            extra.append(current[[c for c in columns if c in current.columns]])
            logger.info("adding %d labelled rows of %s", len(current), params.current)
    if adds_feedback(params.trigger, spec.monitoring.retrain_on_feedback):
        files = open_files(settings.traffic_base)
        labelled = labelled_live_rows(files, champion.name, spec.data.target, spec.monitoring.feedback_days)
        logger.info("adding %d labelled rows of live traffic (feedback)", len(labelled))
        if len(labelled):
            extra.append(labelled[[c for c in columns if c in labelled.columns]])
    source = spec.data.source
    if extra:
        original = load_table(spec.data.source)
        combined = pd.concat([original, *(_like(rows, original, spec.data.target) for rows in extra)],
                             ignore_index=True)
        source = hand_off(combined, settings.data_base, f"retrain/{spec.slug}-{stamp}.parquet")
        logger.info("training on %d rows: the spec's %d plus %d added", len(combined),
                    len(original), len(combined) - len(original))
    spec = spec.model_copy(update={"data": spec.data.model_copy(update={"source": source})})
    spec_path = folder / f"{spec.slug}-{stamp}.yaml"
    spec_path.write_text(yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))
    return TrainParameters(
        experiment=str(spec_path), trigger=params.trigger,
        monitoring_run_id=params.monitoring_run_id, warm_start=champion.best_params or None,
    )


def hand_off(frame: pd.DataFrame, base: str, key: str) -> str:
    """Write `frame` as Parquet under `base` (a folder, or s3://bucket/prefix); its URI."""
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    open_files(base).write(key, buffer.getvalue())
    if "://" in base:
        return f"{base.rstrip('/')}/{key}"
    return str(Path(base) / key)


def adds_feedback(trigger: str, retrain_on_feedback: bool) -> bool:
    """Whether training adds labelled live records: when the spec asks, and always when the
    labels are what showed the champion to be wrong."""
    return retrain_on_feedback or trigger == "quality"


def labelled_live_rows(files, model: str, target: str, days: float,
                       now: datetime | None = None) -> pd.DataFrame:
    """Served records that got feedback in the last `days`, with the true label as `target`:
    without a bound, every retraining would read all the feedback ever sent."""
    since = (now or datetime.now(UTC)) - timedelta(days=days)
    return read_labelled(files, model, target, since)


def _like(rows: pd.DataFrame, original: pd.DataFrame, target: str) -> pd.DataFrame:
    """Labels as the original data holds them: feedback keeps class labels as text."""
    if target not in original.columns or target not in rows.columns:
        return rows
    if rows[target].dtype == original[target].dtype:
        return rows
    as_text = {str(v): v for v in original[target].dropna().unique()}
    return rows.assign(**{target: rows[target].map(lambda v: as_text.get(str(v), v))})


def tell_the_check(flow, flow_run, state) -> None:
    """A state hook: the check that triggered this retraining records how it stands, so a
    retraining that fails, is cancelled or crashes shows where the drift was found."""
    check = ((flow_run.parameters or {}).get("params") or {}).get("monitoring_run_id")
    if not check:
        return
    try:
        record_retraining(MlflowClient(), check, retraining_state(state.type.value), str(flow_run.id))
    except Exception:  # noqa: BLE001 - a hook must not change the run's outcome; the runner settles it later
        logging.getLogger(__name__).warning(
            "could not record retraining %s on check %s", flow_run.id, check, exc_info=True)


HOOKS = [tell_the_check]


@flow(name="retrain", on_running=HOOKS, on_completion=HOOKS, on_failure=HOOKS,
      on_cancellation=HOOKS, on_crashed=HOOKS)
def retrain(params: RetrainParameters) -> dict:
    """Retrain MODEL after drift; the new version must beat the champion to replace it."""
    label_this_process()
    name_this_run("retrain", params.model, params.trigger)
    return train(prepare(params))


if __name__ == "__main__":
    retrain(RetrainParameters())
