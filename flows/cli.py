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


def _platform(profile: str | None = None):
    from infra.platform import platform_from_settings
    from infra.settings import Settings

    return platform_from_settings(Settings(), profile)


def _connect(platform) -> None:
    """Point MLflow and Prefect clients at the platform, unless their own variables are set."""
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
    profile: Annotated[str, typer.Option(help="local (SQLite, local files) or full")] = "local",
    json_output: JsonOption = False,
) -> None:
    """Start the platform in the background and wait until every service is healthy."""
    from infra.services import start_services, write_state
    from infra.settings import Settings

    try:
        platform = _platform(profile)
        notes = start_services(platform.services, platform.home, Settings().start_timeout_s)
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

    if workers > 1:
        fail("--workers needs the full profile's work pool, which is not available yet")
    try:
        # A bad spec or unusable data fails here, in a second, before any run exists.
        from experiments.spec import load_spec, with_overrides
        from experiments.validation import load_dataset

        load_dataset(with_overrides(load_spec(experiment), data, trials))
        platform = _platform()
        _connect(platform)
        require_running(os.environ["MLFLOW_TRACKING_URI"], os.environ["PREFECT_API_URL"])
        _quiet_prefect_errors()
        from flows.train import TrainParameters
        from flows.train import train as train_flow

        return train_flow(TrainParameters(experiment=experiment, data=data, trials=trials))
    except (InputError, PlatformError) as error:
        fail(str(error))


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

    if current is None:
        fail("give the data to check with --current PATH (recording live traffic with "
             "`mlops serve` is not available yet)")
    try:
        from experiments.data import load_table

        frame = load_table(current)  # a bad path or unreadable file fails before any run exists
        _connect(_platform())
        require_running(os.environ["MLFLOW_TRACKING_URI"], os.environ["PREFECT_API_URL"])
        import mlflow
        from mlflow.tracking import MlflowClient

        from experiments.contract import DataContract, check_against_contract
        from registry.champion import get_champion

        champion = get_champion(MlflowClient(), model)
        if champion is None:
            raise InputError(f"model '{model}' has no champion to monitor; train it first")
        info = mlflow.models.get_model_info(f"models:/{model}/{champion.version}")
        contract = DataContract.from_dict(info.metadata["mlops_contract"])
        missing = check_against_contract(frame, contract).missing_columns
        if missing:
            raise InputError(f"current data {current} lacks columns of {model}'s contract: "
                             f"{', '.join(missing)}")
        _quiet_prefect_errors()
        from flows.monitor import MonitorParameters
        from flows.monitor import monitor as monitor_flow

        return monitor_flow(MonitorParameters(model=model, current=current))
    except (InputError, PlatformError) as error:
        fail(str(error))


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
