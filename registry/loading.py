"""The one way a registered model is loaded: its files checked as data, then skops on our types.

MLflow's own loaders put a model's `code/` folder at the front of sys.path before importing
skops, so a version that ships code runs it in the loading process. Here MLmodel is read as
YAML, a version that ships code, other flavors or another format is refused, the files must
match the digest taken when the version was registered, and the skops file is loaded with the
types the platform's own pipelines need, never the list the model carries.
"""

import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any

import mlflow
import yaml
from mlflow.tracking import MlflowClient

from experiments.model_files import model_digest, read_mlmodel, skops_file
from experiments.pipelines import FEATURE_SKOPS_TYPES, SKOPS_TRUSTED_TYPES

DIGEST_TAG = "mlops.model_digest"
FLAVORS = frozenset({"python_function", "sklearn"})
# Every type any of our pipeline families, with any feature engineering the search chose,
# needs skops to trust; nothing a model asks for.
TRUSTED_TYPES = sorted(set(chain.from_iterable(
    [*SKOPS_TRUSTED_TYPES.values(), *FEATURE_SKOPS_TYPES.values()])))


class UnsafeModel(ValueError):
    """A registered version the platform refuses to load; the message names it and why."""


@dataclass(frozen=True)
class LoadedModel:
    name: str
    version: str
    pipeline: Any = field(repr=False)
    metadata: dict


def refusal(mlmodel: dict) -> str | None:
    """Why MLmodel describes a model the platform does not load, or None."""
    flavors = mlmodel.get("flavors") if isinstance(mlmodel, dict) else None
    if not isinstance(flavors, dict) or not all(isinstance(c, dict) for c in flavors.values()):
        return "its MLmodel does not describe flavors"
    if set(flavors) != FLAVORS:
        return f"its flavors are {sorted(flavors)}, not {sorted(FLAVORS)}"
    with_code = sorted(name for name, conf in flavors.items() if conf.get("code"))
    if with_code:
        return f"it ships code (the 'code' entry of {', '.join(with_code)})"
    serialization = flavors["sklearn"].get("serialization_format")
    if serialization != "skops":
        return f"it is serialized with {serialization!r}, not skops"
    return None


def check_files(path: Path, recorded_digest: str | None) -> Path:
    """The skops file of a downloaded model that passes every rule; ValueError saying why not."""
    mlmodel = read_mlmodel(path)
    reason = refusal(mlmodel)
    if reason is not None:
        raise ValueError(reason)
    file = skops_file(path, mlmodel)
    if not recorded_digest:
        raise ValueError(f"it has no {DIGEST_TAG} tag (not registered by the platform)")
    if model_digest(path) != recorded_digest:
        raise ValueError("its files changed after it was registered (digest differs)")
    from experiments.fast_skops import skops_io

    untrusted = sorted(set(skops_io.get_untrusted_types(file=file)) - set(TRUSTED_TYPES))
    if untrusted:
        raise ValueError(f"it holds types no pipeline of ours uses: {', '.join(untrusted)}")
    return file


def download(client: MlflowClient, name: str, version: str, dst: str) -> Path:
    return Path(mlflow.artifacts.download_artifacts(
        artifact_uri=f"models:/{name}/{version}", dst_path=dst, tracking_uri=client.tracking_uri))


def _refused() -> tuple[type[BaseException], ...]:
    """What a malformed or tampered model raises while it is read: all of it is a refusal.
    skops is imported only here and where a model is read (experiments/fast_skops.py)."""
    from experiments.fast_skops import skops_io

    # Through fast_skops: importing skops.io.exceptions directly imports skops.io slowly.
    return ValueError, yaml.YAMLError, skops_io.exceptions.UntrustedTypesFoundException, FileNotFoundError


@contextmanager
def _checked(client: MlflowClient, name: str, version: str):
    """The downloaded version's folder and skops file once every rule passed; UnsafeModel if not."""
    recorded = client.get_model_version(name, version).tags.get(DIGEST_TAG)
    with tempfile.TemporaryDirectory() as tmp:
        path = download(client, name, version, tmp)
        try:
            yield path, check_files(path, recorded)
        except _refused() as error:
            reason = " ".join(str(error).split())  # one line, whatever the parser said
            raise UnsafeModel(f"refused {name} version {version}: {reason}") from error


def check_registered(client: MlflowClient, name: str, version: str) -> dict:
    """The metadata of a version that passes every rule, nothing loaded; UnsafeModel if not."""
    with _checked(client, name, str(version)) as (path, _):
        return read_mlmodel(path).get("metadata") or {}


def load_registered(client: MlflowClient, name: str, version: str) -> LoadedModel:
    """Version VERSION of NAME, checked, then loaded by skops on our types; UnsafeModel if refused."""
    with _checked(client, name, str(version)) as (path, file):
        from experiments.fast_skops import skops_io

        pipeline = skops_io.load(file, trusted=TRUSTED_TYPES)
        metadata = read_mlmodel(path).get("metadata") or {}
    return LoadedModel(name, str(version), pipeline, metadata)


def digest_of(model_uri: str, tracking_uri: str | None = None) -> str:
    """The digest of a logged model, taken when it is registered."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(mlflow.artifacts.download_artifacts(
            artifact_uri=model_uri, dst_path=tmp, tracking_uri=tracking_uri))
        return model_digest(path)
