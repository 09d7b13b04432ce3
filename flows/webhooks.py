"""What a user gives `mlops alerts add`, checked, and a webhook's address as it may be shown.

Pure functions, no Prefect: a bad URL or event kind fails before anything is contacted.
A webhook's secret is in its address (Slack's path token, a query key, a user's password),
so an address is only ever shown masked.
"""

import re
from urllib.parse import urlsplit

from experiments.errors import InputError

KINDS = ("drift", "quality", "promotion", "failure")
MASK = "***"
# The first path segment is shown when it is a short plain word such as `services` or
# `hooks` and more follows; anything else (the last segment, digits, long strings) may be
# the token.
_PLAIN_SEGMENT = re.compile(r"[A-Za-z][A-Za-z_-]{0,15}")


def parse_kinds(text: str | None) -> tuple[str, ...]:
    """The event kinds in a comma-separated list (all of them when none is given)."""
    if text is None:
        return KINDS
    kinds = [k.strip().lower() for k in text.split(",") if k.strip()]
    if not kinds:
        raise InputError(f"--on names no event kind; choose from {', '.join(KINDS)}")
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise InputError(f"unknown event kind {unknown[0]!r} in --on; choose from {', '.join(KINDS)}")
    return tuple(k for k in KINDS if k in kinds)


def require_webhook_url(url: str) -> str:
    """The URL, if it is an http(s) address with a host; InputError otherwise."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
    except ValueError:
        parts, host = None, None
    if parts is None or parts.scheme not in ("http", "https") or not host:
        raise InputError(f"the alert URL must be an http:// or https:// address with a host; "
                         f"got {mask_url(url)!r}")
    return url.strip()


def mask_url(url: str) -> str:
    """scheme://host[:port] and the path's first segment when it is a plain word followed by
    more; the rest (path tokens, query, fragment, user and password) replaced by ***."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return MASK
    if not parts.scheme or not parts.hostname:
        return MASK
    netloc = parts.hostname if port is None else f"{parts.hostname}:{port}"
    if parts.username is not None or parts.password is not None:
        netloc = f"{MASK}@{netloc}"
    segments = [s for s in parts.path.split("/") if s]
    path = ""
    if len(segments) > 1 and _PLAIN_SEGMENT.fullmatch(segments[0]):
        path = f"/{segments[0]}/{MASK}"
    elif segments:
        path = f"/{MASK}"
    query = f"?{MASK}" if parts.query else ""
    fragment = f"#{MASK}" if parts.fragment else ""
    return f"{parts.scheme}://{netloc}{path}{query}{fragment}"


def is_slack(url: str) -> bool:
    """Whether the URL is a Slack incoming webhook (sent through Prefect's Slack block)."""
    parts = urlsplit(url)
    return parts.hostname == "hooks.slack.com" and parts.path.startswith("/services/")
