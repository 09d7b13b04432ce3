"""Errors about the platform itself, as opposed to a user's spec or data."""


class PlatformError(RuntimeError):
    """The platform is not running, not reachable, or cannot start: the message says which."""
