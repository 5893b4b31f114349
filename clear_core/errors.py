"""The errors a user can act on, as one family.

``ClearError`` is the base of every error whose message is written for the person who caused it: what is wrong,
where, and what to do. The CLI prints it as one line and the pages show it as a message; any other exception is a
bug and surfaces as one (the CLI names its type and offers CLEAR_DEBUG=1, the pages log it and say so).

Each module keeps its own errors beside the code that raises them, all under ``ClearError``:
``data.DataError`` (a file that cannot be imported), ``store.StoreError`` with ``StoreLockedError``,
``StoreReadOnlyError`` and ``NotFoundError`` (also a ``LookupError``), ``export.ExportError`` with
``UnscoredRowsError``, ``handoff.DiskFullError`` (also an ``OSError``) and ``model.ModelLoadError`` (also a
``RuntimeError``). A bad argument is ``InvalidInput``, which is also a ``ValueError``. A plain ``ValueError`` or
``AssertionError`` is left for contracts between our own modules (e.g. worker and store disagreeing on score fields).
"""

from __future__ import annotations


class ClearError(Exception):
    """A problem the user can act on; ``str()`` is a message written for them."""


class InvalidInput(ClearError, ValueError):
    """A bad argument: a threshold outside [0, 1], an unknown sort column, filter, format or decision."""
