"""Errors a user can act on.

Every error vaelab raises for a user's mistake (bad argument, bad file, bad data) is a
:class:`VaelabError`; the command line prints it as one line and exits with status 2.
Errors that are also bad *values* subclass :class:`ValueError`, so library callers can catch
them the usual way.
"""

from __future__ import annotations


class VaelabError(Exception):
    """A problem the user can fix; its message names the offending value."""


class InvalidArgumentError(VaelabError, ValueError):
    """An argument is out of range or of the wrong shape."""


class ConfigError(VaelabError, ValueError):
    """A configuration key is unknown, of the wrong type or impossible."""


class DataError(VaelabError, ValueError):
    """A data file is missing, corrupt, or does not fit the model."""


class CheckpointError(VaelabError):
    """A run directory or checkpoint is missing, unreadable or unsafe."""


def positive_int(name: str, value) -> int:
    """``value`` if it is an integer >= 1, else an :class:`InvalidArgumentError` naming it."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidArgumentError(f"{name} must be an integer >= 1, got {value!r}")
    return value
