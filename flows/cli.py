"""The `mlops` command line: one subcommand per user action, each parse, call, print."""

import json
import logging
import os
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from experiments.errors import InputError
from infra.errors import PlatformError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Train, track, register and monitor tabular models on MLflow and Prefect.",
)
err = Console(stderr=True)
out = Console()

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]


def fail(message: str) -> None:
    """A user's mistake or a platform that is not there: one line, non-zero exit."""
    err.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def _platform(profile: str | None = None, generate_secrets: bool = False):
    from infra.platform import platform_from_settings
    from infra.settings import Settings

    return platform_from_settings(Settings(), profile, generate_secrets)


def _connect(platform) -> None:
    """Point MLflow, Prefect and boto3 clients at the platform (and, in the full profile, give
    them its secrets), unless their own variables are already set."""
    for name, value in platform.client_environment().items():
        os.environ.setdefault(name, value)
    # Our own progress names the run once; MLflow would print a link per trial run.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def _quiet_prefect_errors() -> None:
    # A failed flow is reported once by this CLI (one line for a user's mistake, a
    # traceback for a bug); Prefect still sends the full record to its server and UI.
    from prefect.logging.handlers import PrefectConsoleHandler

    for handler in logging.getLogger("prefect").handlers:
        if isinstance(handler, PrefectConsoleHandler):
            handler.addFilter(lambda record: record.levelno < logging.ERROR)


@app.command()
def up(
    profile: Annotated[
        str | None,
        typer.Option(help="local (SQLite, local files; the default) or full (PostgreSQL, S3, auth)"),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Start the platform in the background and wait until every service is healthy."""
    from infra.services import start_services, write_state
    from infra.settings import Settings

    try:
        platform = _platform(profile, generate_secrets=True)
        # Recorded first, so that `mlops down` can stop what a failed start left running.
        write_state(platform.home, platform.state())
        notes = start_services(platform.services, platform.home, Settings().start_timeout_s,
                               before_wave=platform.before_wave)
        write_state(platform.home, platform.state())
    except (PlatformError, InputError) as error:
        fail(str(error))
    if json_output:
        print(json.dumps(_status_object(platform)))
        return
    for note in notes:
        err.print(note, highlight=False)
    out.print(f"MLflow UI:  {platform.mlflow_url}\nPrefect UI: {platform.prefect_url}")


def _status_object(platform) -> dict:
    from infra.services import service_statuses

    return {
        "profile": platform.profile,
        "mlflow_url": platform.mlflow_url,
        "prefect_url": platform.prefect_url,
        **{k: v for k, v in platform.details.items() if k in ("artifact_root", "s3_endpoint", "database")},
        "services": {
            s.name: {"running": s.running, "url": s.url, "pid": s.pid}
            for s in service_statuses(platform.services, platform.home)
        },
    }


@app.command()
def status(json_output: JsonOption = False) -> None:
    """Show each service: running or not, and its address."""
    try:
        status = _status_object(_platform())
    except PlatformError as error:
        fail(str(error))
    if json_output:
        print(json.dumps(status))
        return
    table = Table(title=f"mlops platform ({status['profile']} profile)")
    for column in ("service", "state", "address"):
        table.add_column(column)
    for name, service in status["services"].items():
        state = "[green]running[/green]" if service["running"] else "[red]stopped[/red]"
        table.add_row(name, state, service["url"])
    out.print(table)
    for key in ("artifact_root", "s3_endpoint", "database"):
        if key in status:
            out.print(f"{key}: {status[key]}", highlight=False)


@app.command()
def down() -> None:
    """Stop what `mlops up` started; data stays in MLOPS_HOME."""
    from infra.services import stop_services

    try:
        platform = _platform()
    except PlatformError as error:
        fail(str(error))
    for note in stop_services(platform.services, platform.home):
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
    from infra.platform import require_running

    try:
        # A bad spec or unusable data fails here, in a second, before any run exists
        # (after _connect, which only sets variables: s3:// data needs the platform's keys).
        from experiments.spec import load_spec, with_overrides
        from experiments.validation import load_dataset

        platform = _platform()
        _connect(platform)
        load_dataset(with_overrides(load_spec(experiment), data, trials))
        if workers > 1 and platform.profile != "full":
            fail("--workers needs the full profile (a study in PostgreSQL and a work pool); "
                 "start it with `mlops up --profile full`")
        require_running(os.environ["MLFLOW_TRACKING_URI"], os.environ["PREFECT_API_URL"])
        if os.environ.get("MLOPS_OPTUNA_STORAGE"):
            from infra.database import require_reachable

            require_reachable(os.environ["MLOPS_OPTUNA_STORAGE"])
        if workers > 1:
            from flows.pool import require_worker

            require_worker(os.environ.get("MLOPS_WORK_POOL", "mlops"))
        _quiet_prefect_errors()
        from flows.train import TrainParameters
        from flows.train import train as train_flow

        return train_flow(TrainParameters(experiment=experiment, data=data, trials=trials,
                                          workers=workers))
    except (InputError, PlatformError) as error:
        fail(str(error))


@app.command()
def worker(
    pool: Annotated[str | None, typer.Option(help="The work pool to take flow runs from")] = None,
) -> None:
    """A Prefect worker that runs flow runs (search batches) from the platform's work pool."""
    from infra.full import worker_argv
    from infra.platform import require_running

    try:
        platform = _platform()
        if platform.profile != "full":
            fail("workers serve the full profile's work pool; start it with `mlops up --profile full`")
        _connect(platform)
        require_running(os.environ["MLFLOW_TRACKING_URI"], os.environ["PREFECT_API_URL"])
    except PlatformError as error:
        fail(str(error))
    # Ask for work every 2 s rather than 10: a search batch waits for a worker to pick it up.
    os.environ.setdefault("PREFECT_WORKER_QUERY_SECONDS", "2")
    argv = worker_argv(pool or os.environ.get("MLOPS_WORK_POOL", "mlops"))
    sys.stdout.flush()
    os.execv(argv[0], argv)  # the worker takes this process: a signal to it reaches Prefect's


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
    from infra.platform import require_running

    try:
        from experiments.data import load_table

        _connect(_platform())  # sets variables only; s3:// data needs the platform's keys
        # A bad path or unreadable file fails before any run exists.
        frame = load_table(current) if current is not None else None
        require_running(os.environ["MLFLOW_TRACKING_URI"], os.environ["PREFECT_API_URL"])
        import mlflow
        from mlflow.tracking import MlflowClient

        from experiments.contract import DataContract, check_against_contract
        from registry.champion import get_champion

        client = MlflowClient()
        champion = get_champion(client, model)
        if champion is None:
            raise InputError(f"model '{model}' has no champion to monitor; train it first")
        info = mlflow.models.get_model_info(f"models:/{model}/{champion.version}")
        contract = DataContract.from_dict(info.metadata["mlops_contract"])
        if frame is None:
            frame, where = _live_window(client, model, champion.run_id)
        else:
            where = f"current data {current}"
        missing = check_against_contract(frame, contract).missing_columns
        if missing:
            raise InputError(f"{where} lacks columns of {model}'s contract: {', '.join(missing)}")
        _quiet_prefect_errors()
        from flows.monitor import MonitorParameters
        from flows.monitor import monitor as monitor_flow

        result = monitor_flow(MonitorParameters(model=model, current=current))
    except (InputError, PlatformError) as error:
        fail(str(error))
    if result.get("skipped"):  # the window emptied between the check above and the flow
        fail(f"{model}: {result['reason']}")
    return result


def _live_window(client, model: str, run_id: str):
    """The latest window of MODEL's live traffic; InputError when it is too small to check."""
    from flows.monitor import live_traffic, too_little_traffic
    from monitoring.champion import load_run_spec

    policy = load_run_spec(client, run_id).monitoring
    traffic, store = live_traffic(model, policy.window_minutes)
    if len(traffic) < policy.min_rows:
        raise InputError(f"{model}: {too_little_traffic(len(traffic), policy)} in {store}; "
                         f"serve it with `mlops serve {model}` or give --current PATH")
    return traffic, f"live traffic in {store}"


def _print_monitoring(result: dict) -> None:
    table = Table(title=f"drift check of {result['model_name']} v{result['champion_version']}",
                  show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    table.add_row("drift detected", "yes" if result["drift_detected"] else "no")
    table.add_row("drift share", f"{result['drift_share']:.2f}")
    table.add_row("drifted columns", ", ".join(result["drifted_columns"]) or "none")
    table.add_row("retraining", f"{result['retraining']}: {result['reason']}")
    table.add_row("monitoring run", result["run_url"])
    table.add_row("report", result["report_uri"])
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
    table.add_row("promoted", "yes" if result["promoted"] else "no")
    table.add_row("why", result["reason"])
    table.add_row("champion", f"version {result['champion_version']}")
    table.add_row("MLflow run", result["run_url"])
    table.add_row("MLflow UI", os.environ.get("MLFLOW_TRACKING_URI", ""))
    prefect_ui = os.environ.get("PREFECT_API_URL", "").removesuffix("/api")
    table.add_row("Prefect UI", f"{prefect_ui}/runs/flow-run/{result['flow_run_id']}")
    out.print(table)


def _short(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


@app.command()
def serve(
    model: Annotated[str, typer.Argument(help="The registered model whose champion is served")],
    port: Annotated[int | None, typer.Option(help="Port (default: MLOPS_SERVE_PORT or 8080)")] = None,
    host: Annotated[str | None, typer.Option(help="Address (default: MLOPS_SERVE_HOST or 127.0.0.1)")] = None,
) -> None:
    """Serve MODEL's champion over HTTP and record live traffic for monitoring."""
    from serving.runner import listen, run
    from serving.settings import ServingSettings

    try:
        _connect(_platform())  # may set MLOPS_TRAFFIC_URI (the full profile's bucket)
        settings = ServingSettings()
        host = host or settings.serve_host
        port = port if port is not None else settings.serve_port
        _require_champion(model)
    except (InputError, PlatformError) as error:
        fail(str(error))
    try:
        sock = listen(host, port)
    except OSError as error:
        fail(f"cannot listen on {host}:{port}: {error.strerror or error}")
    err.print(f"serving {model}'s champion on http://{host}:{port} (traffic: "
              f"{settings.traffic_base}/{model})", highlight=False)
    try:
        run(model, settings, sock)
    except KeyboardInterrupt:  # Ctrl-C: uvicorn has shut down cleanly and raises it again
        raise typer.Exit(130) from None


def _require_champion(model: str) -> None:
    """One line unless MLflow answers and MODEL is registered with a champion."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from infra.platform import require_running
    from monitoring.traffic import MODEL_NAME
    from registry.champion import get_champion

    if not MODEL_NAME.fullmatch(model):
        raise InputError(f"'{model}' is not a model name (letters, digits, '.', '_', '-')")
    tracking = os.environ["MLFLOW_TRACKING_URI"]
    if tracking.startswith("http"):  # serving needs MLflow only, not Prefect
        require_running(tracking)
    client = MlflowClient()
    try:
        client.get_registered_model(model)
    except MlflowException as error:
        if error.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        raise InputError(f"unknown model '{model}': nothing is registered under that name; "
                         "train it with `mlops train`") from error
    if get_champion(client, model) is None:
        raise InputError(f"model '{model}' has no champion to serve; train it first")


@app.command()
def demo(
    trials: Annotated[int | None, typer.Option(min=1, help="Optuna trials")] = None,
) -> None:
    """Start the local platform and run the whole loop on the bundled example."""
    up(profile="local", json_output=False)
    result = _run_training("penguins", None, trials, 1)
    _print_training(result)

    from experiments.data import load_table
    from experiments.spec import load_spec
    from flows.demo import wait_for_retraining, write_batches

    spec = load_spec("penguins")
    stationary, drifted = write_batches(load_table(spec.data.source), _platform().home / "demo")
    out.print(f"\n[bold]A stationary batch[/bold] ({stationary})")
    _print_monitoring(_run_monitoring("penguins", str(stationary)))
    out.print(f"\n[bold]A drifted batch[/bold] ({drifted})")
    check = _run_monitoring("penguins", str(drifted))
    _print_monitoring(check)
    if check["retraining"] == "triggered":
        from mlflow.tracking import MlflowClient

        err.print("waiting for the retraining that the drift event started ...")
        done = wait_for_retraining(MlflowClient(), "penguins", check["monitoring_run_id"])
        out.print(_chain(check, done))
    out.print(
        f"\nThe platform keeps running. MLflow UI: {os.environ['MLFLOW_TRACKING_URI']}  "
        f"Prefect UI: {os.environ['PREFECT_API_URL'].removesuffix('/api')}\n"
        "Stop it with `mlops down`."
    )


def _chain(check: dict, done: dict | None) -> str:
    head = (f"\n[bold]The chain[/bold]: drift share {check['drift_share']:.2f} "
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
