"""`mlops alerts add|list|remove`: parse, call flows.alerts, print. The URL and the event
kinds are checked before the platform is contacted, so bad input creates nothing."""

import json
from typing import Annotated

import typer

from experiments.errors import InputError
from flows.console import fail, out

alerts_app = typer.Typer(no_args_is_help=True, help="Messages to a webhook on drift, quality, "
                         "promotion and failure (Prefect notification blocks and automations).")

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]


def _prefect():
    """A Prefect client on the running platform (one line and exit 1 when it is not there)."""
    from infra.clients import connect, connection
    from infra.errors import PlatformError
    from infra.platform import require_running
    from infra.profiles import platform_from_settings
    from infra.settings import process_settings

    try:
        settings = process_settings()
        conn = connection(platform_from_settings(settings), settings)
        connect(conn, settings)
        require_running(conn.mlflow_url, conn.prefect_api_url)
    except PlatformError as error:
        fail(str(error))
    from prefect.client.orchestration import get_client  # after connecting: it reads the address once

    return conn, get_client(sync_client=True)


@alerts_app.command("add")
def add(
    url: Annotated[str, typer.Argument(help="The webhook: a Slack incoming webhook or any http(s) "
                                            "URL that takes a JSON POST of {\"text\": ...}")],
    on: Annotated[str | None, typer.Option(help="Event kinds, comma-separated: drift, quality, "
                                                "promotion, failure (default: all)")] = None,
    json_output: JsonOption = False,
) -> None:
    """Send one message to URL per event of the chosen kinds."""
    from flows.webhooks import mask_url, parse_kinds, require_webhook_url

    try:
        kinds, url = parse_kinds(on), require_webhook_url(url)
    except InputError as error:
        fail(str(error))
    conn, client = _prefect()
    from flows.alerts import add_alert

    with client:
        alert_id = add_alert(client, url, kinds, conn.mlflow_url)
    if json_output:
        print(json.dumps({"id": alert_id, "on": list(kinds), "url": mask_url(url)}))
        return
    out.print(f"alert {alert_id}: {', '.join(kinds)} -> {mask_url(url)}", highlight=False)


@alerts_app.command("list")
def list_(json_output: JsonOption = False) -> None:
    """Every alert: its id, its webhook (masked) and the events it is on."""
    _, client = _prefect()
    from flows.alerts import list_alerts

    with client:
        alerts = list_alerts(client)
    if json_output:
        print(json.dumps({"alerts": [{"id": a.id, "url": a.url, "on": list(a.on)} for a in alerts]}))
        return
    for alert in alerts:
        out.print(f"{alert.id}  {', '.join(alert.on):<36} {alert.url}", highlight=False)
    if not alerts:
        out.print("no alerts; add one with `mlops alerts add URL`")


@alerts_app.command("remove")
def remove(
    alert_id: Annotated[str, typer.Argument(metavar="ID", help="As `mlops alerts list` shows it")],
) -> None:
    """Remove an alert: its automations and its notification block."""

    _, client = _prefect()
    from flows.alerts import remove_alert

    try:
        with client:
            remove_alert(client, alert_id)
    except InputError as error:
        fail(str(error))
    out.print(f"alert {alert_id} removed", highlight=False)
