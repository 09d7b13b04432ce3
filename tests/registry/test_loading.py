"""The loader on a real registry (MLflow in SQLite): what it refuses, and that a good model
comes back as the pipeline that was logged."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from planted import log_planted, plant
from synthetic import binary_frame

from experiments.contract import infer_contract
from experiments.pipelines import build_pipeline, feature_frame
from experiments.tracking import log_sklearn_model
from registry.champion import register
from registry.loading import DIGEST_TAG, UnsafeModel, load_registered, model_digest

NAME = "loading-test"


@pytest.fixture(scope="module")
def fitted():
    """A small forest (its trees need a trusted type) and the features it was fitted on."""
    frame = binary_frame(n=200, seed=6)
    contract = infer_contract(frame, "label", "classification")
    x = feature_frame(frame, contract.numeric, contract.categorical)
    pipeline = build_pipeline("classification", "random_forest", {"n_estimators": 5},
                              contract.numeric, contract.categorical, 0)
    return pipeline.fit(x, frame["label"]), x, {"mlops_contract": contract.to_dict()}


@pytest.fixture
def registry(sqlite_mlflow, tmp_path):
    """Log a model in a run of its own and register it as the platform does; its version."""
    client = sqlite_mlflow
    experiment = client.create_experiment(NAME, artifact_location=(tmp_path / "artifacts").as_uri())

    def add(log) -> str:
        run_id = client.create_run(experiment).info.run_id
        return str(register(client, NAME, log(run_id), run_id, {}).version)

    return client, add


def stored(client, version: str) -> Path:
    """Where the version's files lie (a local artifact store), to change them behind its back."""
    return Path(client.get_model_version_download_uri(NAME, version).removeprefix("file://"))


def test_a_good_model_predicts_as_the_logged_pipeline(registry, fitted):
    client, add = registry
    pipeline, x, metadata = fitted
    version = add(lambda run_id: log_sklearn_model(run_id, pipeline, x.head(5), metadata).uri)

    loaded = load_registered(client, NAME, version)

    assert (loaded.pipeline.predict(x) == pipeline.predict(x)).all()
    assert (loaded.pipeline.predict_proba(x) == pipeline.predict_proba(x)).all()
    assert loaded.metadata == json.loads(json.dumps(metadata))  # as YAML gives it back


@pytest.mark.parametrize(("task", "family", "choices"), [
    ("regression", "ridge", {"fe.transform": "log", "fe.interactions": "pairs",
                             "fe.selection": "correlated"}),
    ("classification", "logistic_regression", {"fe.transform": "power", "fe.selection": "importance"}),
    ("classification", "hist_gradient_boosting", {"max_iter": 5, "fe.selection": "importance"}),
])
def test_a_model_with_feature_engineering_loads_and_predicts_as_logged(registry, task, family,
                                                                       choices):
    """Given a pipeline with each feature-engineering step the search may choose, logged and
    registered as training does, then the loader (our trusted types only) gives it back and it
    predicts exactly as the pipeline that was logged."""
    client, add = registry
    frame = binary_frame(n=200, seed=8)
    frame["x1"] = np.exp(2 * frame["x1"])  # a heavy-tailed column for the skew correction
    target = "label" if task == "classification" else "x2"
    contract = infer_contract(frame, target, task)
    x = feature_frame(frame, contract.numeric, contract.categorical)
    pipeline = build_pipeline(task, family, choices, contract.numeric, contract.categorical, 0)
    pipeline.fit(x, frame[target])
    metadata = {"mlops_contract": contract.to_dict()}
    version = add(lambda run_id: log_sklearn_model(run_id, pipeline, x.head(5), metadata).uri)

    loaded = load_registered(client, NAME, version)

    assert [name for name, _ in loaded.pipeline.steps] == [name for name, _ in pipeline.steps]
    assert (loaded.pipeline.predict(x) == pipeline.predict(x)).all()


def _edit(change, retag: bool = True):
    """Rewrite MLmodel with CHANGE applied, then re-tag the digest as a writer of versions could."""
    def apply(client, version: str) -> None:
        path = stored(client, version)
        mlmodel = yaml.safe_load((path / "MLmodel").read_text())
        change(mlmodel["flavors"])
        (path / "MLmodel").write_text(yaml.safe_dump(mlmodel))
        if retag:
            client.set_model_version_tag(NAME, version, DIGEST_TAG, model_digest(path))
    return apply


def _append_to_model_file(client, version: str) -> None:
    path = stored(client, version)
    with open(path / "model.skops", "ab") as file:
        file.write(b"\0")


def _break_mlmodel(client, version: str) -> None:
    (stored(client, version) / "MLmodel").write_text("flavors: {sklearn: [\n")


def _drop_digest(client, version: str) -> None:
    client.delete_model_version_tag(NAME, version, DIGEST_TAG)


@pytest.mark.parametrize(("tamper", "reason"), [
    (_edit(lambda f: f["sklearn"].update(code="code")), "it ships code (the 'code' entry of sklearn)"),
    (_edit(lambda f: f["python_function"].update(code="code")), "'code' entry of python_function"),
    (_edit(lambda f: f.update(keras={"keras_version": "3"})), "its flavors are ['keras', "),
    (_edit(lambda f: f.pop("python_function")), "its flavors are ['sklearn'], not"),
    (_edit(lambda f: f["sklearn"].update(serialization_format="cloudpickle")),
     "it is serialized with 'cloudpickle', not skops"),
    (_edit(lambda f: f["sklearn"].update(pickled_model="../../outside.skops"), retag=False),
     "names no model file inside the model"),
    (_append_to_model_file, "its files changed after it was registered (digest differs)"),
    (_drop_digest, f"it has no {DIGEST_TAG} tag"),
    (_break_mlmodel, "while parsing a flow"),
])
def test_refusals_name_the_model_the_version_and_why(registry, fitted, tamper, reason):
    """Given a registered good model changed in one way, loading it is refused in one line."""
    client, add = registry
    pipeline, x, metadata = fitted
    version = add(lambda run_id: log_sklearn_model(run_id, pipeline, x.head(5), metadata).uri)
    tamper(client, version)

    with pytest.raises(UnsafeModel) as refused:
        load_registered(client, NAME, version)

    assert str(refused.value).startswith(f"refused {NAME} version {version}: ")
    assert reason in str(refused.value)
    assert "\n" not in str(refused.value)


def test_a_model_that_ships_code_is_refused_without_running_it(registry, fitted, tmp_path):
    """Given a version logged with a `skops` package in its code paths (which MLflow's own
    loader runs, as the control shows), the loader refuses it and the package never runs."""
    client, add = registry
    pipeline, _, metadata = fitted
    marker = tmp_path / "marker"
    code = plant(tmp_path / "planted", marker)
    version = add(lambda run_id: log_planted(run_id, pipeline, metadata, code))

    with pytest.raises(UnsafeModel, match="it ships code"):
        load_registered(client, NAME, version)

    assert not marker.exists()
    control = subprocess.run(
        [sys.executable, "-c", "import sys, mlflow; mlflow.sklearn.load_model(sys.argv[1])",
         str(stored(client, version))], capture_output=True, text=True, timeout=120)
    assert marker.exists(), control.stderr[-2000:]


def test_an_mlmodel_that_asks_yaml_to_run_code_is_refused_without_running_it(registry, fitted,
                                                                           tmp_path):
    """Given a version whose MLmodel carries a python tag (a full YAML loader would call
    os.system while parsing), with its digest taken again so only the YAML is wrong, loading
    it is refused as unsafe YAML and the command never runs."""
    client, add = registry
    pipeline, x, metadata = fitted
    version = add(lambda run_id: log_sklearn_model(run_id, pipeline, x.head(5), metadata).uri)
    marker = tmp_path / "ran"
    path = stored(client, version)
    text = (path / "MLmodel").read_text()
    (path / "MLmodel").write_text(
        f"planted: !!python/object/apply:os.system [\"touch {marker}\"]\n{text}")
    client.set_model_version_tag(NAME, version, DIGEST_TAG, _digest_of_files(path))

    with pytest.raises(UnsafeModel, match="could not determine a constructor"):
        load_registered(client, NAME, version)

    assert not marker.exists()
    with pytest.raises(yaml.constructor.ConstructorError):  # the control: it is a python tag
        yaml.safe_load((path / "MLmodel").read_text())


def _digest_of_files(path: Path) -> str:
    """model_digest's sum, without reading the YAML it is given."""
    import hashlib

    digest = hashlib.sha256()
    for file in (path / "MLmodel", path / "model.skops"):
        content = file.read_bytes()
        digest.update(f"{file.name}\0{len(content)}\0".encode())
        digest.update(content)
    return digest.hexdigest()


def test_the_types_a_model_asks_to_trust_are_not_trusted(registry):
    """Given a version that lists `_operator.neg` among its trusted types (MLflow's loader
    would trust it), the loader trusts only our own table and refuses it."""
    import operator

    import mlflow
    import numpy as np
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    client, add = registry
    pipeline = make_pipeline(FunctionTransformer(func=operator.neg), Ridge())
    pipeline.fit(np.array([[0.0], [1.0]]), [0, 1])
    version = add(lambda run_id: mlflow.sklearn.log_model(
        pipeline, name="model", run_id=run_id,
        serialization_format="skops", skops_trusted_types=["_operator.neg"],
        pip_requirements=["scikit-learn"]).model_uri)

    with pytest.raises(UnsafeModel, match="it holds types no pipeline of ours uses: _operator.neg"):
        load_registered(client, NAME, version)
