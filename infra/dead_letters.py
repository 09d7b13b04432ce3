"""Messages the Prefect server gave up on: events no automation saw, actions never done.

Prefect's in-memory broker (both profiles) retries a message its handler failed three
times, then writes it as one JSON file under `PREFECT_HOME/dlq` and goes on: a failure
alert, a crash mark, a retraining on drift that never happens, with only a traceback in
the server's log. `mlops status` reads the folder so that such a loss is seen.
"""

import json
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

FOLDER = "dlq"  # under PREFECT_HOME: Prefect's default dead-letter folder


def describe(dropped: Mapping) -> str:
    """One line for a person from `read_dead_letters`'s answer; empty when nothing was dropped."""
    if not dropped["count"]:
        return ""
    kinds = ", ".join(f"{kind} x{n}" for kind, n in sorted(dropped["kinds"].items()))
    return (f"Prefect gave up on {dropped['count']} message(s) from {dropped['first']} to "
            f"{dropped['last']} ({kinds}): events no automation saw, actions not done (alerts, "
            f"crash marks, retrainings); kept in {dropped['folder']}")


def kind_of(message: bytes) -> str:
    """The event's name, or the action's type, in one dead-letter file."""
    try:
        outer = json.loads(message)
        attributes = outer.get("attributes") or {}
        if attributes.get("event"):
            return str(attributes["event"])
        data = json.loads(outer["data"])
        if "event" in data:
            return str(data["event"])
        if isinstance(data.get("action"), dict):
            automation = (data.get("automation") or {}).get("name", "?")
            return f"{data['action'].get('type', '?')} action of {automation!r}"
    except (ValueError, TypeError, KeyError, AttributeError):
        pass
    return "unreadable message"


def read_dead_letters(prefect_home: Path) -> dict:
    """What Prefect's broker dropped, from its folder under `prefect_home`: how many, of which
    kinds, when the first and the last were dropped (UTC)."""
    folder = prefect_home / FOLDER
    kinds: Counter[str] = Counter()
    times = []
    for path in sorted(folder.iterdir()) if folder.is_dir() else ():
        try:
            message = path.read_bytes()
            times.append(datetime.fromtimestamp(path.stat().st_mtime, UTC))
        except (FileNotFoundError, IsADirectoryError):  # removed while we read; not a message
            continue
        except OSError:  # still a message dropped, whatever keeps us from reading it
            message = b""
            times.append(datetime.now(UTC))
        kinds[kind_of(message)] += 1
    when = [t.isoformat(timespec="seconds") for t in (min(times), max(times))] if times else [None, None]
    return {"count": len(times), "kinds": dict(kinds), "first": when[0], "last": when[1],
            "folder": str(folder)}
