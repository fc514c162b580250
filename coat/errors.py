"""The one base class of errors that are the user's to fix (a config key, a path, a data source, the hub).

Their messages say what was wrong and what to do, so the ``coat`` command prints them as one line (exit status 2)
instead of a traceback. Errors of the library itself stay ordinary exceptions, with their traceback.
"""

from __future__ import annotations


class CoatError(Exception):
    """An error in what was asked for; the message names the thing and the fix."""


class SourceNotFoundError(CoatError, FileNotFoundError):
    """Something to read that is not there: a local path (audio folder, manifest, saved dataset), a target cache."""


class HubUnreachableError(CoatError, ConnectionError):
    """The Hugging Face hub could not be reached to look something up, and it is not in the local cache."""
