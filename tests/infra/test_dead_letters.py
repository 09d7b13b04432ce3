"""What Prefect's broker gave up on (infra/dead_letters.py), read from files written by
Prefect's own dead-letter code, as its server writes them."""

import asyncio
import os
from datetime import UTC, datetime, timedelta
from uuid import uuid4

from prefect.server.utilities.messaging.memory import MemoryMessage, Subscription, Topic

from infra.dead_letters import describe, read_dead_letters


def _drop(folder, data: str, attributes: dict) -> None:
    """Prefect's in-memory broker writing a message it gave up on."""
    subscription = Subscription(Topic.by_name("events"), dead_letter_queue_path=folder)
    asyncio.run(subscription.send_to_dead_letter_queue(MemoryMessage(data, attributes, 4)))


def _event(name: str) -> str:
    from prefect.server.events.schemas.events import ReceivedEvent

    resource = {"prefect.resource.id": f"prefect.flow-run.{uuid4()}"}
    return ReceivedEvent(id=uuid4(), event=name, resource=resource,
                         occurred=datetime.now(UTC)).model_dump_json()


def test_no_folder_means_nothing_dropped(tmp_path):
    dropped = read_dead_letters(tmp_path)

    assert dropped["count"] == 0 and dropped["kinds"] == {}
    assert describe(dropped) == ""


def test_dropped_events_and_actions_are_counted_by_kind_with_when(tmp_path):
    """Given two flow-run events, a send-notification action and a file that is not JSON in
    the dead-letter folder, then each is counted under its kind, with the first and last
    time one was dropped, and the line names them all and the folder."""
    folder = tmp_path / "dlq"
    for _ in range(2):
        _drop(folder, _event("prefect.flow-run.Completed"), {"event": "prefect.flow-run.Completed"})
    action = ('{"automation": {"name": "mlops alert: ops"}, "triggered": "2026-12-06T10:00:00Z",'
              ' "action": {"type": "send-notification", "block_document_id": "b"}}')
    _drop(folder, action, {})
    (folder / "torn").write_bytes(b'{"data": "{\\"ev')
    an_hour_ago = (datetime.now(UTC) - timedelta(hours=1)).timestamp()
    os.utime(folder / "torn", (an_hour_ago, an_hour_ago))

    dropped = read_dead_letters(tmp_path)

    assert dropped["count"] == 4
    assert dropped["kinds"] == {"prefect.flow-run.Completed": 2, "unreadable message": 1,
                                "send-notification action of 'mlops alert: ops'": 1}
    assert datetime.fromisoformat(dropped["first"]) < datetime.fromisoformat(dropped["last"])
    line = describe(dropped)
    assert line.startswith("Prefect gave up on 4 message(s) from ")
    assert "prefect.flow-run.Completed x2" in line and str(folder) in line
    assert "\n" not in line


def test_an_event_is_named_from_its_data_when_its_attributes_do_not(tmp_path):
    _drop(tmp_path / "dlq", _event("mlops.drift.detected"), {})

    assert read_dead_letters(tmp_path)["kinds"] == {"mlops.drift.detected": 1}
