"""Errors in what a user gave us: a spec, a path, a data set."""


class InputError(ValueError):
    """A user's spec or data cannot be used; the message names the problem and the fix."""
