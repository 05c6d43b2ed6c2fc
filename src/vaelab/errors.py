"""Errors a user can act on.

Every error vaelab raises for a user's mistake (bad argument, bad file, bad data) is a
:class:`VaelabError`; the command line prints it as one line and exits with status 2.
Errors that are also bad *values* subclass :class:`ValueError`, so library callers can catch
them the usual way.
"""

from __future__ import annotations

import numbers
import reprlib


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


# A value quoted in an error message is cut to a few dozen characters, whatever its size or
# depth: reprlib stops at these limits instead of walking the whole value, so a YAML alias bomb
# or a megabyte string costs nothing to quote.
_EXCERPT = reprlib.Repr()
_EXCERPT.maxstring = _EXCERPT.maxother = _EXCERPT.maxlong = 60
_EXCERPT.maxlist = _EXCERPT.maxtuple = _EXCERPT.maxdict = _EXCERPT.maxset = 5
_EXCERPT.maxlevel = 2
EXCERPT_CHARS = 100


def excerpt(value) -> str:
    """``repr(value)``, bounded: long strings, numbers and collections are cut with ``...``."""
    text = _EXCERPT.repr(value)
    return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 3] + "..."


def positive_int(name: str, value) -> int:
    """``value`` if it is an integer >= 1, else an :class:`InvalidArgumentError` naming it."""
    # numbers.Integral: numpy's integers too (``len(a) // 2`` of an array is np.int64)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise InvalidArgumentError(f"{name} must be an integer >= 1, got {excerpt(value)}")
    return int(value)
