"""The `mlops` command line: one subcommand per user action, each parse, call, print."""

import atexit
import gc
import json
import logging
import os
import sys
from typing import Annotated

import typer
from rich.table import Table

from experiments.errors import InputError
from flows.alert_commands import alerts_app
from flows.console import err, error, fail, out, styled
from infra.errors import PlatformError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Train, track, register and monitor tabular models on MLflow and Prefect.",
)
app.add_typer(alerts_app, name="alerts")

# Registered on import, before the modules a command imports register theirs, so it runs
# last of the exit handlers: the interpreter's teardown then skips the search for cycles
# over a heap of scikit-learn, MLflow and Prefect (1.0-1.3 s of `mlops train`'s exit, after
# its work and Prefect's drains are done). Objects are still freed as their last reference
# goes; only unreachable cycles are left for the OS to reclaim with the process.
atexit.register(gc.freeze)

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]


def _settings():
    from infra.settings import process_settings

    return process_settings()


def _platform(settings, profile: str | None = None, secrets=None):
    from infra.profiles import platform_from_settings

    return platform_from_settings(settings, profile, secrets)


def _connect(settings, prefect: bool = True):
    """Find the platform, point this process's clients at it, and fail in one line unless
    it answers (Prefect too, unless `prefect` is False)."""
    from infra.clients import connect, connection
    from infra.platform import require_running

    conn = connection(_platform(settings), settings)
    settings = connect(conn, settings)
    require_running(conn.mlflow_url, conn.prefect_api_url if prefect else None)
    return conn, settings


def _import_without_collecting() -> None:
    """Before a command imports its flow: the cycle collector pauses until
    `_before_in_process_flow` freezes what was imported. Prefect, MLflow and scikit-learn
    make ~400k objects that live until exit, and collecting while they arrive scanned them
    again and again: a 20-trial `mlops train` spent 0.77 s in collections (7 full passes,
    0.59 s), against 0.17 s (3 full passes, 0.08 s) with the pause. A command that fails
    before its flow exits with the collector paused; nothing is left to collect then."""
    gc.disable()


def _before_in_process_flow(progress: bool = True) -> None:
    """Ready this process to run a flow itself: no wait at the flow's end, errors reported once."""
    # A failed flow is reported once by this CLI (one line for a user's mistake, a
    # traceback for a bug); Prefect still sends the full record to its server and UI.
    # Without `progress` (a drift check, which prints its own table) nothing is echoed.
    from prefect.logging.handlers import PrefectConsoleHandler

    from flows.heartbeats import end_flows_without_waiting_for_their_heartbeats

    end_flows_without_waiting_for_their_heartbeats()  # 0-1 s at the end of each flow
    # What is imported by now lives until exit: frozen, the collector's passes during the
    # flow do not scan it again.
    gc.freeze()
    gc.enable()
    # Prefect puts its console handler on the root logger when it configures logging,
    # which importing a flow does: call this after that import.
    # A server that stopped is reported once, in one line, not in a retry warning per request.
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    for logger in (logging.getLogger(), logging.getLogger("prefect")):
        for handler in logger.handlers:
            if isinstance(handler, PrefectConsoleHandler):
                handler.addFilter(lambda record: progress and record.levelno < logging.ERROR)


@app.command()
def up(
    profile: Annotated[
        str | None,
        typer.Option(help="local (SQLite, local files; the default) or full (PostgreSQL, S3, auth)"),
    ] = None,
    json_output: JsonOption = False,
    allow_remote: Annotated[
        bool, typer.Option(help="Bind to a non-loopback MLOPS_HOST (other machines can connect)"),
    ] = False,
) -> None:
    """Start the platform in the background and wait until every service is healthy."""
    from flows.warm_start import this_environment

    environment = this_environment()  # what a warm process serves: this shell's commands
    from infra.profiles import chosen_profile, require_loopback, require_no_other_profile
    from infra.secrets import ensure
    from infra.services import platform_lock, start_notes, start_services, write_state

    try:
        settings = _settings()
        require_loopback(settings.host, allow_remote)
        with platform_lock(settings.home):
            require_no_other_profile(settings, profile)
            chosen = chosen_profile(settings, profile)
            platform = _platform(settings, chosen, ensure(settings) if chosen == "full" else None)
            # Recorded first, so that `mlops down` can stop what a failed start left running.
            write_state(platform.home, platform.state())
            runner_starts = _runner_starts(platform)
            notes = start_services(platform.services, platform.home, settings.start_timeout_s,
                                   before_wave=platform.before_wave)
            write_state(platform.home, platform.state())
    except (PlatformError, InputError) as error:
        fail(str(error))
    notes += start_notes(platform.home, "runner") if runner_starts else _settle_leftovers()
    notes += _start_warm(environment, platform.home)
    if json_output:
        print(json.dumps(_status_object(platform)))
        return
    for note in notes:
        err.print(note, highlight=False)
    from flows.links import experiments_url

    out.print(f"MLflow UI:  {experiments_url(platform.mlflow_url)}\nPrefect UI: {platform.prefect_url}")
    if platform.evidently_url:
        out.print(f"Evidently UI: {platform.evidently_url}")


def _start_warm(environment: dict[str, str], home) -> list[str]:
    """The warm process that `train` and `monitor` start from (flows/launch.py), in the
    background: `up` does not wait for its imports."""
    from flows.warm_start import start_warm_process, warm_start_wanted

    if not warm_start_wanted(environment):
        return []

    try:
        start_warm_process(environment, home / "logs" / "warm.log", home)
    except OSError as error:
        return [f"warm start: off, {error}; `train` and `monitor` start cold"]
    return []


def _runner_starts(platform) -> bool:
    """Whether this `up` starts the runner. A runner settles what stopped processes left
    before it reports healthy (what `_settle_leftovers` does): then `up` prints the runner's
    lines (it writes them, or fails to start), and need not import MLflow and Prefect to
    settle them again (~3 s of a cold `up`)."""
    from infra.services import is_alive

    runner = next((s for s in platform.services if s.name == "runner"), None)
    return runner is not None and not is_alive(platform.home, runner)


def _settle_leftovers() -> list[str]:
    """Runs left Pending or Running by processes that are gone (a training that stopped with
    its server) are crashed, and checks learn how their retrainings ended."""
    from infra.settings import use

    try:
        use(None)  # read again: a first `up --profile full` has just written the secrets
        _connect(_settings())
        from flows.recovery import recover  # after connecting: Prefect reads its address once

        return recover(runner_starts=False)
    except Exception as error:  # noqa: BLE001 - the platform runs; the runner settles them too
        return [f"could not settle the runs stopped processes left: {error}"]


def _status_object(platform) -> dict:
    from infra.dead_letters import read_dead_letters
    from infra.platform import prefect_home
    from infra.services import service_statuses

    return {
        "profile": platform.profile,
        "mlflow_url": platform.mlflow_url,
        "prefect_url": platform.prefect_url,
        "evidently_url": platform.evidently_url or None,
        **{k: v for k, v in platform.details.items() if k in ("artifact_root", "s3_endpoint", "database")},
        "services": {
            s.name: {"running": s.running, "url": s.url, "pid": s.pid}
            for s in service_statuses(platform.services, platform.home)
        },
        "dropped_messages": read_dead_letters(prefect_home(platform.home)),
    }


@app.command()
def status(json_output: JsonOption = False) -> None:
    """Show each service: running or not, and its address."""
    try:
        status = _status_object(_platform(_settings()))
    except PlatformError as error:
        fail(str(error))
    if json_output:
        print(json.dumps(status))
        return
    from infra.dead_letters import describe

    table = Table(title=f"mlops platform ({status['profile']} profile)")
    for column in ("service", "state", "address"):
        table.add_column(column)
    for name, service in status["services"].items():
        state = styled("running", "green") if service["running"] else styled("stopped", "red")
        table.add_row(name, state, service["url"])
    out.print(table)
    for key in ("artifact_root", "s3_endpoint", "database"):
        if key in status:
            out.print(f"{key}: {status[key]}", highlight=False)
    if dropped := describe(status["dropped_messages"]):
        err.print(dropped, style="yellow", highlight=False, soft_wrap=True)


@app.command()
def down() -> None:
    """Stop what `mlops up` started; data stays in MLOPS_HOME."""
    from flows.warm_start import stop_warm_process, this_environment
    from infra.services import platform_lock, stop_recorded, stop_services

    stop_warm_process(this_environment())

    try:
        settings = _settings()
        with platform_lock(settings.home):
            try:
                platform = _platform(settings)
            except PlatformError as error:  # a damaged state file, lost secrets: the pid files say enough
                err.print(f"{error}; stopping what the pid files in {settings.home / 'run'} name",
                          highlight=False, soft_wrap=True)
                notes = stop_recorded(settings.home)
            else:
                notes = stop_services(platform.services, platform.home)
    except PlatformError as error:
        fail(str(error))
    for note in notes:
        err.print(note, highlight=False)


@app.command()
def train(
    experiment: Annotated[str, typer.Argument(help="A spec path, or a spec name under experiments/specs")],
    data: Annotated[str | None, typer.Option(help="Data path or URI instead of the spec's")] = None,
    trials: Annotated[int | None, typer.Option(min=1, help="Optuna trials")] = None,
    workers: Annotated[int, typer.Option(min=1, help="Fan the search out (full profile)")] = 1,
    json_output: JsonOption = False,
) -> None:
    """Run the training flow on EXPERIMENT and promote the winner."""
    result = _run_training(experiment, data, trials, workers)
    if json_output:
        print(json.dumps(result, default=str))
        return
    _print_training(result)


def _run_training(experiment: str, data: str | None, trials: int | None, workers: int) -> dict:
    _import_without_collecting()
    try:
        # A bad spec or unusable data fails here, in a second, before any run exists
        # (after connecting: s3:// data needs the platform's keys).
        from experiments.spec import load_spec, with_overrides
        from flows.preflight import require_fan_out, require_study_storage, require_training_data

        conn, settings = _connect(_settings())
        require_training_data(with_overrides(load_spec(experiment), data, trials))
        require_fan_out(settings, workers)
        require_study_storage(settings)
        from flows.train import TrainParameters
        from flows.train import train as train_flow

        _before_in_process_flow()

        result = train_flow(TrainParameters(experiment=experiment, data=data, trials=trials,
                                            workers=workers))
    except (InputError, PlatformError) as error:
        fail(str(error))
    except Exception:
        _fail_if_stopped(conn, "the training stopped")
        raise  # the platform answers: a bug, whose traceback is worth seeing
    from flows.links import experiments_url

    return {**result, "mlflow_ui": experiments_url(conn.mlflow_url), "prefect_ui": conn.prefect_ui_url}


def _fail_if_stopped(conn, what: str) -> None:
    """One line, when a flow failed because a server of the platform stopped answering."""
    from infra.services import is_healthy

    gone = [f"{name} does not answer at {url}" for name, url in
            (("MLflow", conn.mlflow_url), ("Prefect", conn.prefect_api_url))
            if not is_healthy(f"{url.rstrip('/')}/health")]
    if gone:
        err.print(error(f"{what}: {' and '.join(gone)}; start the platform with `mlops up`, "
                        "then run the same command again: it resumes where this one stopped"),
                  highlight=False, soft_wrap=True)
        # Nothing is left to save (the flow has given up its study's lease): Prefect's log and
        # event workers would only spend their drain timeouts, and print their complaints, on a
        # server that is gone.
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(1)


@app.command()
def worker(
    pool: Annotated[str | None, typer.Option(help="The work pool to take flow runs from")] = None,
    name: Annotated[str | None, typer.Option(help="The worker's name in Prefect (default: random)")] = None,
    print_env: Annotated[bool, typer.Option(
        "--print-env", help="Print the variables a worker on another machine needs, and exit")] = False,
) -> None:
    """A Prefect worker that runs flow runs (training, checks, retraining, batch scoring,
    search batches) from the platform's work pool, on this machine or another."""
    from infra.full import worker_command
    from infra.services import child_environment

    try:
        settings = _settings()
        if _elsewhere(settings) and not print_env:
            settings = _join_from_elsewhere(settings)
        else:
            if _platform(settings).profile != "full":
                fail("workers serve the full profile's work pool; start it with `mlops up --profile full`")
            conn, settings = _connect(settings)
            if print_env:
                for name, value in sorted(conn.variables.items()):
                    print(f"{name}={value}")
                return
    except PlatformError as error:
        fail(str(error))
    argv, env = worker_command(pool or settings.work_pool)
    if name:
        argv += ["--name", name]
    sys.stdout.flush()
    # The worker takes this process: a signal to it reaches Prefect's.
    os.execve(argv[0], argv, child_environment(env))


def _elsewhere(settings) -> bool:
    """A worker on a machine with no platform of its own: MLOPS_HOME records none, and the
    environment names the platform's servers."""
    from infra.services import read_state

    return read_state(settings.home) is None and bool(
        settings.mlflow_tracking_uri and settings.prefect_api_url)


def _join_from_elsewhere(settings):
    """The environment (`mlops worker --print-env` on the platform's machine) is all there is."""
    from infra.platform import require_running

    if settings.profile != "full" or not settings.optuna_storage:
        raise PlatformError(
            "a worker on another machine needs the full profile's variables (MLOPS_PROFILE=full, "
            "MLOPS_OPTUNA_STORAGE, ...); print them with `mlops worker --print-env` where the "
            "platform runs")
    require_running(settings.mlflow_tracking_uri, settings.prefect_api_url)
    return settings


@app.command()
def monitor(
    model: Annotated[str, typer.Argument(help="The registered model whose champion is checked")],
    current: Annotated[str | None, typer.Option(help="Current data: CSV/Parquet file, folder or URI")] = None,
    json_output: JsonOption = False,
) -> None:
    """One drift check of MODEL's champion; retraining is triggered when the policy says so."""
    result = _run_monitoring(model, current)
    if json_output:
        print(json.dumps(result, default=str))
        return
    _print_monitoring(result)


def _run_monitoring(model: str, current: str | None) -> dict:
    """The flow reads the data once and checks it before any check is recorded; a bad batch
    or too little live traffic ends it in one line."""
    _import_without_collecting()
    try:
        from mlflow.tracking import MlflowClient

        from flows.preflight import require_champion

        _connect(_settings())
        require_champion(MlflowClient(), model)
        from flows.monitor import MonitorParameters
        from flows.monitor import monitor as monitor_flow

        _before_in_process_flow(progress=False)

        result = monitor_flow(MonitorParameters(model=model, current=current))
    except (InputError, PlatformError) as error:
        fail(str(error))
    if result.get("skipped"):
        fail(f"{model}: {result['reason']}")
    return result


def _print_monitoring(result: dict) -> None:
    table = Table(title=f"drift check of {result['model_name']} v{result['champion_version']}",
                  show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    table.add_row("drift detected", "yes" if result["drift_detected"] else "no")
    table.add_row("drift share", f"{result['drift_share']:.2f}")
    table.add_row("drifted columns", ", ".join(result["drifted_columns"]) or "none")
    table.add_row("live quality", result.get("quality_note") or "not checked")
    if result.get("prediction_drift") is not None:
        table.add_row("prediction drift", "yes" if result["prediction_drift"] else "no")
    table.add_row("retraining", f"{result['retraining']}: {result['reason']}")
    if result.get("challenger"):
        table.add_row("challenger", _challenger_line(result["challenger"]))
    earlier = result.get("previous_retraining")
    if earlier:
        flow_run = earlier["flow_run_id"] or "not created yet"
        table.add_row("previous retraining", f"{earlier['state']} (flow run {flow_run}, "
                      f"triggered by check {earlier['monitoring_run_id']})")
    table.add_row("monitoring run", result["run_url"])
    table.add_row("report", result["report_uri"])
    table.add_row("dashboard", result.get("evidently_url") or "not published (see the flow's log)")
    out.print(table)


def _print_training(result: dict) -> None:
    table = Table(title=f"{result['experiment']}: version {result['model_version']}", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    table.add_row("model", result["best_model"])
    table.add_row("best params", ", ".join(f"{k}={_short(v)}" for k, v in result["best_params"].items()))
    table.add_row(f"cv {result['metric']['name']}", f"{result['cv_score']:.4f} ({result['trials']} trials)")
    for name, value in result["holdout_metrics"].items():
        table.add_row(f"holdout {name}", f"{value:.4f}")
    table.add_row("promoted", "yes" if result["promoted"] else
                  "no, awaiting approval (`mlops approve`)" if result.get("awaiting_approval") else "no")
    table.add_row("why", result["reason"])
    champion = result["champion_version"]
    table.add_row("champion", f"version {champion}" if champion else "none")
    table.add_row("MLflow run", result["run_url"])
    table.add_row("MLflow UI", result["mlflow_ui"])
    table.add_row("Prefect UI", f"{result['prefect_ui']}/runs/flow-run/{result['flow_run_id']}")
    out.print(table)


def _short(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _score(value: float | None) -> str:
    return "no score" if value is None else _short(value)


def _challenger_line(weighed: dict) -> str:
    """What a check made of the challenger on live labels (`promote_on_live_evidence`'s answer)."""
    version = weighed.get("challenger_version")
    verdict = "promoted" if weighed.get("promoted") else "not promoted"
    return f"{f'v{version} ' if version else ''}{verdict}: {weighed.get('reason', '')}"


@app.command()
def serve(
    model: Annotated[str, typer.Argument(help="The registered model whose champion is served")],
    port: Annotated[int | None, typer.Option(help="Port (default: MLOPS_SERVE_PORT or 8080)")] = None,
    host: Annotated[str | None, typer.Option(help="Address (default: MLOPS_SERVE_HOST or 127.0.0.1)")] = None,
) -> None:
    """Serve MODEL's champion over HTTP and record live traffic for monitoring."""
    from serving.runner import command, listen, serve_token

    try:
        from mlflow.tracking import MlflowClient

        from flows.preflight import require_servable

        conn, settings = _connect(_settings(), prefect=False)  # serving needs MLflow only
        host = host or settings.serve_host
        port = port if port is not None else settings.serve_port
        token = serve_token(settings)
        require_servable(MlflowClient(), model)
        env = _serving_environment(_platform(settings), conn, settings)
    except (InputError, PlatformError) as error:
        fail(str(error))
    try:
        sock = listen(host, port)
    except OSError as error:
        fail(f"cannot listen on {host}:{port}: {error.strerror or error}")
    guarded = ("; /predict, /feedback and /model need Authorization: Bearer $MLOPS_SERVE_TOKEN"
               if token else "")
    err.print(f"serving {model}'s champion on http://{host}:{port} (traffic: "
              f"{settings.traffic_base}/{model}{guarded})", highlight=False)
    argv = command(model, sock)
    sys.stdout.flush()
    sys.stderr.flush()
    # The server takes this process (a signal to it reaches uvicorn) with a new environment:
    # none of the secrets this process read stays in it.
    os.execve(argv[0], argv, env)


def _serving_environment(platform, conn, settings) -> dict[str, str]:
    """What the serving process starts with. Full profile: only the serving credentials (a
    model-reading MLflow user, keys that write traffic), none of the admin's, no Prefect or
    database secret. Local profile (no secrets): this process's environment."""
    from infra.services import child_environment, scrubbed_environment
    from serving.runner import settings_environment

    wanted = {**settings_environment(settings), "MLFLOW_TRACKING_URI": conn.mlflow_url}
    if platform.serve_env:
        from infra.accounts import require_mlflow_login

        serve = platform.serve_env
        login = (serve["MLFLOW_TRACKING_USERNAME"], serve["MLFLOW_TRACKING_PASSWORD"])
        require_mlflow_login(conn.mlflow_url, *login)  # before the port is taken: one line
        return scrubbed_environment({**serve, **wanted})
    return child_environment(wanted)


@app.command()
def models(json_output: JsonOption = False) -> None:
    """Every registered model: its champion, challenger, versions and next scheduled check."""
    rows = _model_rows()
    if json_output:
        print(json.dumps({"models": rows}))
        return
    _print_models(rows)


def _model_rows() -> list[dict]:
    try:
        from datetime import UTC, datetime

        _connect(_settings())
        from mlflow.tracking import MlflowClient  # after connecting: Prefect reads its address once
        from prefect.client.orchestration import get_client

        from flows.schedules import describe_models

        with get_client(sync_client=True) as prefect:
            return describe_models(MlflowClient(), prefect, datetime.now(UTC))
    except (InputError, PlatformError) as error:
        fail(str(error))


def _print_models(rows: list[dict]) -> None:
    table = Table(title="registered models")
    for column in ("model", "champion", "challenger", "versions", "checks every", "next check"):
        table.add_column(column)
    for row in rows:
        every, at = row["monitoring"]["every_minutes"], row["monitoring"]["next_check"]
        table.add_row(row["name"], row["champion_version"] or "-", _challenger_cell(row),
                      str(row["versions"]), f"{every:g} min" if every else "off", at or "-")
    out.print(table)


def _challenger_cell(row: dict) -> str:
    """The challenger, and every version waiting for a person's approval."""
    awaiting = row.get("awaiting_approval") or []
    cell = row["challenger_version"] or "-"
    return f"{cell} (awaiting approval: {', '.join(awaiting)})" if awaiting else cell


def _person() -> str:
    """Who moves `champion` by hand: the OS user running the command."""
    import getpass

    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name in the environment nor the password database
        return "unknown"


@app.command()
def history(
    model: Annotated[str, typer.Argument(help="The registered model")],
    json_output: JsonOption = False,
) -> None:
    """Every version that held `champion`, oldest first: from, until, who moved it and why."""
    try:
        _connect(_settings(), prefect=False)  # the history is in MLflow only
        from mlflow.tracking import MlflowClient

        from flows.lifecycle import require_model
        from registry.history import champion_history

        client = MlflowClient()
        require_model(client, model)
        rows = champion_history(client, model)
    except (InputError, PlatformError) as error:
        fail(str(error))
    if json_output:
        print(json.dumps({"model_name": model, "history": rows}))
        return
    if not rows:
        out.print(f"no version of {model} has held champion yet", highlight=False)
        return
    table = Table(title=f"champion of {model}, oldest first")
    for column in ("version", "from", "until", "by", "reason"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(row["version"], row["from"], row["until"] or "now", row["by"], row["reason"])
    out.print(table)


@app.command()
def compare(
    model: Annotated[str, typer.Argument(help="The registered model")],
    json_output: JsonOption = False,
) -> None:
    """Champion vs challenger on the live records both scored that got labels (paired bootstrap)."""
    try:
        _connect(_settings(), prefect=False)  # the registry and the traffic store only
        from mlflow.tracking import MlflowClient

        from flows.compare import compare as compare_live

        row = compare_live(MlflowClient(), model).as_json(model)
    except (InputError, PlatformError) as error:
        fail(str(error))
    if json_output:
        print(json.dumps(row))
        return
    table = Table(title=f"{model}: champion vs challenger on live labels ({row['metric']})")
    for column in ("version", "role", row["metric"]):
        table.add_column(column)
    for role in ("champion", "challenger"):
        table.add_row(row[f"{role}_version"], role, _score(row[f"{role}_score"]))
    out.print(table)
    out.print(row["reason"], highlight=False, soft_wrap=True)


ReasonOption = Annotated[str | None, typer.Option(help="Why champion moves (recorded with the move)")]


@app.command()
def promote(
    model: Annotated[str, typer.Argument(help="The registered model")],
    version: Annotated[str, typer.Argument(help="The version that takes `champion`")],
    reason: ReasonOption = None,
    json_output: JsonOption = False,
) -> None:
    """Move `champion` to VERSION, recording why, who and when; `mlops serve` follows."""
    from flows.move_input import require_reason, require_version_number

    try:  # checked before the platform is contacted: bad input moves nothing
        reason, version = require_reason(reason), require_version_number(version)
    except InputError as error:
        fail(str(error))
    _move(json_output, "promote", model, version, reason)


@app.command()
def rollback(
    model: Annotated[str, typer.Argument(help="The registered model")],
    reason: ReasonOption = None,
    json_output: JsonOption = False,
) -> None:
    """Move `champion` back to the version that held it before the current one."""
    from flows.move_input import require_reason

    try:
        reason = require_reason(reason, required=False)
    except InputError as error:
        fail(str(error))
    _move(json_output, "rollback", model, reason)


def _move(json_output: bool, how: str, model: str, *args) -> None:
    """Promote or roll back under the model's lock, then let its monitoring follow."""
    try:
        _connect(_settings())
        from mlflow.tracking import MlflowClient  # after connecting: Prefect reads its address once

        from flows import lifecycle

        # The lock's events are sent at exit, and Prefect's queue (a logger named after its
        # class) notes "Still processing items" on stderr meanwhile: not the user's business.
        # Failures to send are logged elsewhere, and still shown.
        logging.getLogger("EventsWorker").setLevel(logging.ERROR)
        client = MlflowClient()
        moved = getattr(lifecycle, how)(client, model, *args, by=_person())
        notes = [lifecycle.announce(client, moved, how), lifecycle.follow(client, model)]
    except (InputError, PlatformError) as error:
        fail(str(error))
    for note in filter(None, notes):
        err.print(f"warning: {note}", highlight=False, soft_wrap=True)
    if json_output:
        print(json.dumps({"model_name": moved.model_name, "champion_version": moved.champion_version,
                          "previous_champion": moved.previous_champion, "by": moved.by,
                          "reason": moved.reason}))
        return
    out.print(f"{model}: champion is version {moved.champion_version} (was "
              f"{moved.previous_champion or 'none'}), moved by {moved.by}: {moved.reason}",
              highlight=False)


@app.command()
def approve(
    model: Annotated[str, typer.Argument(help="The registered model")],
    version: Annotated[str, typer.Argument(help="The version that awaits approval")],
    reason: ReasonOption = None,
    json_output: JsonOption = False,
) -> None:
    """Approve VERSION, which awaits approval (`promotion.mode: approve`): it takes `champion`."""
    from flows.move_input import require_reason, require_version_number

    try:
        reason, version = require_reason(reason, required=False), require_version_number(version)
    except InputError as error:
        fail(str(error))
    _settle(json_output, model, version, "approve", reason)


@app.command()
def reject(
    model: Annotated[str, typer.Argument(help="The registered model")],
    version: Annotated[str, typer.Argument(help="The version that awaits approval")],
    reason: ReasonOption = None,
    json_output: JsonOption = False,
) -> None:
    """Reject VERSION, which awaits approval: it stays `challenger`, and the decision is recorded."""
    from flows.move_input import require_reason, require_version_number

    try:
        reason, version = require_reason(reason), require_version_number(version)
    except InputError as error:
        fail(str(error))
    _settle(json_output, model, version, "reject", reason)


def _settle(json_output: bool, model: str, version: str, decision: str, reason: str | None) -> None:
    """Resume the version's waiting approval run with this decision (the same form as the
    Prefect UI's); that run moves `champion` or not, and records it."""
    try:
        _connect(_settings())
        from mlflow.tracking import MlflowClient  # after connecting: Prefect reads its address once

        from flows import approval

        logging.getLogger("EventsWorker").setLevel(logging.ERROR)
        client = MlflowClient()
        answer = approval.ApprovalInput(decision=decision, comment=reason or "")
        run_id = approval.settle(client, model, version, answer, _person())
        result = approval.outcome(client, model, version, run_id)
    except (InputError, PlatformError) as error:
        fail(str(error))
    if json_output:
        print(json.dumps(result))
        return
    out.print(f"{model} version {version} {result['decision']} by {result['by']}; champion is "
              f"version {result['champion_version'] or 'none'}", highlight=False)


@app.command()
def predict(
    model: Annotated[str, typer.Argument(help="The registered model that scores the data")],
    data: Annotated[str, typer.Option(help="The data to score: CSV/Parquet file, local or s3://")],
    out_uri: Annotated[str, typer.Option("--out", help="The output: a .csv or .parquet file, local or s3://")],
    version: Annotated[int | None, typer.Option(min=1, help="Model version (default: the champion)")] = None,
    bad_rows: Annotated[str, typer.Option(help="fail: a row that breaks the contract stops it; "
                                               "skip: such rows are left out")] = "fail",
    overwrite: Annotated[bool, typer.Option(help="Replace an output that exists")] = False,
    json_output: JsonOption = False,
) -> None:
    """Batch scoring: the input columns, `prediction` and (classifiers) `proba_<class>` per row."""
    if bad_rows not in ("fail", "skip"):
        fail(f"--bad-rows must be fail or skip, not '{bad_rows}'")
    _import_without_collecting()
    try:
        from mlflow.tracking import MlflowClient

        from flows.preflight import require_version
        from serving.tables import require_new_output

        _connect(_settings())
        require_version(MlflowClient(), model, version)  # one line, before any flow run
        require_new_output(out_uri, overwrite)
        from flows.predict import PredictParameters
        from flows.predict import predict as predict_flow

        _before_in_process_flow(progress=False)
        result = predict_flow(PredictParameters(model=model, data=data, out=out_uri, version=version,
                                                bad_rows=bad_rows, overwrite=overwrite))
    except (InputError, PlatformError) as error:
        fail(str(error))
    if json_output:
        print(json.dumps(result))
        return
    out.print(f"{result['rows']} rows scored by {model} v{result['model_version']} into {result['out']}"
              f" ({result['bad_rows']} left out); run: {result['run_url']}", highlight=False)


@app.command()
def demo(
    trials: Annotated[int | None, typer.Option(min=1, help="Optuna trials")] = None,
) -> None:
    """Start the local platform and run the whole loop on the bundled example."""
    up(profile="local", json_output=False, allow_remote=False)
    result = _run_training("penguins", None, trials, 1)
    _print_training(result)

    from experiments.data import load_table
    from experiments.spec import load_spec
    from flows.demo import wait_for_retraining, write_batches

    spec = load_spec("penguins")
    stationary, drifted = write_batches(load_table(spec.data.source), _settings().home.resolve() / "demo")
    out.print(styled("\nA stationary batch", "bold", f" ({stationary})"))
    _print_monitoring(_run_monitoring("penguins", str(stationary)))
    out.print(styled("\nA drifted batch", "bold", f" ({drifted})"))
    check = _run_monitoring("penguins", str(drifted))
    _print_monitoring(check)
    if check["retraining"] == "triggered":
        from mlflow.tracking import MlflowClient

        err.print("waiting for the retraining that the drift event started ...")
        done = wait_for_retraining(MlflowClient(), "penguins", check["monitoring_run_id"])
        out.print(styled("\nThe chain", "bold", _chain(check, done)))
    out.print(styled("\nFrom now on the loop runs by itself", "bold", ": each champion is checked on "
                     "its live traffic on a schedule (Prefect UI: Deployments > monitor > Schedules)"))
    _print_models(_model_rows())
    out.print(
        f"\nThe platform keeps running. MLflow UI: {result['mlflow_ui']}  "
        f"Prefect UI: {result['prefect_ui']}\n"
        f"Drift over time, one point per check: {check.get('evidently_url') or 'not published'}\n"
        "Stop it with `mlops down`."
    )


def _chain(check: dict, done: dict | None) -> str:
    head = (f": drift share {check['drift_share']:.2f} "
            f"-> monitoring run {check['monitoring_run_id']}")
    if done is None:
        return head + " -> no retraining run finished in time (see the Prefect UI)"
    run, version = done["run"], done["version"]
    if version is None:
        return head + f" -> retraining run {run.info.run_id} FAILED (see the Prefect UI)"
    verdict = "promoted to champion" if "champion" in version.aliases else "kept as challenger"
    return (head + f" -> retraining run {run.info.run_id} (mlops.trigger="
            f"{run.data.tags.get('mlops.trigger')}) -> version {version.version}, {verdict}: "
            f"{version.tags.get('mlops.promotion', '')}")


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
