"""Experiment specs: one YAML file each, validated strictly so a typo fails at once."""

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from experiments.errors import InputError

SPEC_DIR = Path(__file__).parent / "specs"

METRICS = {
    # name: (task, greater_is_better)
    "roc_auc": ("classification", True),
    "accuracy": ("classification", True),
    "balanced_accuracy": ("classification", True),
    "f1": ("classification", True),
    "log_loss": ("classification", False),
    "rmse": ("regression", False),
    "mae": ("regression", False),
    "r2": ("regression", True),
}
DEFAULT_METRIC = {"classification": "roc_auc", "regression": "rmse"}
MODELS = {
    "classification": ("logistic_regression", "random_forest", "hist_gradient_boosting"),
    "regression": ("ridge", "random_forest", "hist_gradient_boosting"),
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataSection(_Strict):
    source: str = Field(min_length=1, description="local path, file:// or s3:// URI")
    target: str = Field(min_length=1, description="the column to predict")


class TuningSection(_Strict):
    trials: int = Field(40, ge=1, le=10_000)
    timeout_s: float = Field(600, gt=0)
    metric: str | None = None
    models: tuple[str, ...] | None = Field(None, min_length=1)
    cv_folds: int = Field(5, ge=2, le=20)
    holdout_fraction: float = Field(0.2, gt=0.05, lt=0.8)
    seed: int = 42
    feature_engineering: bool = Field(
        True, description="the search also tries skew transforms, interactions and column pruning")


class MonitoringSection(_Strict):
    drift_share: float = Field(0.3, gt=0, le=1)
    cooldown_minutes: float = Field(60, ge=0)
    windows_needed: int = Field(1, ge=1, description="drift in N of the last M checks ...")
    window_count: int = Field(1, ge=1, description="... M: confirms drift before retraining")
    window_minutes: float = Field(60, gt=0, description="live traffic checked: the last N minutes")
    min_rows: int = Field(100, ge=1, description="fewer live records than this: no check")
    retrain_on_feedback: bool = Field(False, description="retraining adds labelled live records")
    feedback_days: float = Field(
        30, gt=0, description="retraining adds feedback received in the last N days (bounds the read)")
    every_minutes: float = Field(
        60, ge=0, description="scheduled checks of live traffic every N minutes; 0 = none")
    quality_tolerance: float = Field(
        0.02, ge=0, description="live score may fall this far below the holdout score")
    min_labelled: int = Field(
        100, ge=1, description="labelled live records needed to judge live quality")

    @model_validator(mode="after")
    def _n_of_m(self) -> "MonitoringSection":
        if self.windows_needed > self.window_count:
            raise ValueError("monitoring.windows_needed cannot exceed monitoring.window_count")
        return self


class PromotionSection(_Strict):
    mode: Literal["auto", "approve"] = Field(
        "auto", description="approve: a version that wins the gate waits for a person's decision")
    approval_timeout_hours: float = Field(
        24, gt=0, le=24 * 365, description="no decision within N hours: the version is rejected")
    live_evidence: bool = Field(
        False, description="promote the challenger on a significant win on live labels")


class ExperimentSpec(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
    task: Literal["classification", "regression"]
    data: DataSection
    # Not in the search's digest (experiments/training.py: spec_digest): the profile does not
    # change the search, so turning it off or on resumes the same study.
    profile: bool = Field(
        True, description="profile the training data (Evidently's data summary and the leak and "
                          "near-constant checks); false = no profile")
    tuning: TuningSection = TuningSection()
    monitoring: MonitoringSection = MonitoringSection()
    promotion: PromotionSection = PromotionSection()

    @model_validator(mode="after")
    def _metric_and_models_fit_task(self) -> "ExperimentSpec":
        metric = self.tuning.metric
        if metric is not None:
            if metric not in METRICS:
                raise ValueError(f"tuning.metric '{metric}' is unknown; use one of {_names(METRICS)}")
            if METRICS[metric][0] != self.task:
                raise ValueError(f"tuning.metric '{metric}' does not fit task '{self.task}'")
        for model in self.tuning.models or ():
            if model not in MODELS[self.task]:
                raise ValueError(
                    f"tuning.models: '{model}' is not a {self.task} model; "
                    f"use any of {_names(MODELS[self.task])}"
                )
        return self

    @property
    def metric(self) -> str:
        return self.tuning.metric or DEFAULT_METRIC[self.task]

    @property
    def greater_is_better(self) -> bool:
        return METRICS[self.metric][1]

    @property
    def models(self) -> tuple[str, ...]:
        return self.tuning.models or MODELS[self.task]

    @property
    def slug(self) -> str:
        """The name in the form Prefect keys accept (lowercase letters, digits, dashes)."""
        return "".join(c if c.isalnum() else "-" for c in self.name.lower())


def _names(options) -> str:
    return ", ".join(sorted(options))


def known_specs() -> list[str]:
    return sorted(p.stem for p in SPEC_DIR.glob("*.yaml"))


def resolve_spec_path(ref: str) -> Path:
    """A spec path as given, or the bundled spec of that name under experiments/specs."""
    path = Path(ref).expanduser()
    if path.is_file():
        return path
    if path.suffix in (".yaml", ".yml") or "/" in ref:
        raise InputError(f"spec file not found: {ref}")
    bundled = SPEC_DIR / f"{ref}.yaml"
    if bundled.is_file():
        return bundled
    raise InputError(
        f"unknown experiment '{ref}': not a spec file and not a spec name "
        f"(known: {', '.join(known_specs())})"
    )


def parse_spec(text: str, origin: str) -> ExperimentSpec:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(error, "problem", None) or "cannot parse"
        raise InputError(f"spec {origin}: malformed YAML{where}: {problem}") from error
    if not isinstance(raw, dict):
        raise InputError(f"spec {origin}: expected a mapping of keys, got {type(raw).__name__}")
    try:
        return ExperimentSpec.model_validate(raw)
    except ValidationError as error:
        raise InputError(f"spec {origin}: {_describe(error)}") from error


def load_spec(ref: str) -> ExperimentSpec:
    path = resolve_spec_path(ref)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"spec {path}: cannot read: {error}") from error
    return parse_spec(text, str(path))


def _describe(error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"])
        if item["type"] == "extra_forbidden":
            problems.append(f"unknown key '{where}'")
        elif item["type"] == "missing":
            problems.append(f"missing key '{where}'")
        else:
            message = item["msg"].removeprefix("Value error, ")
            problems.append(f"{where}: {message}" if where else message)
    return "; ".join(problems)


def with_overrides(
    spec: ExperimentSpec, data: str | None = None, trials: int | None = None
) -> ExperimentSpec:
    """The spec with a run's overrides of the data source and the number of trials."""
    if data:
        spec = spec.model_copy(update={"data": spec.data.model_copy(update={"source": data})})
    if trials:
        spec = spec.model_copy(update={"tuning": spec.tuning.model_copy(update={"trials": trials})})
    return spec
