"""The exceptions the engine raises on purpose, and the exit code each maps to at the CLI edge.

Every message is one sentence that says what went wrong and what to do; secrets never appear in it.
"""

from __future__ import annotations


class TradebaseError(Exception):
    """A handled failure: the CLI prints the message and exits with `exit_code` (dbt's convention)."""

    exit_code = 1


class ConfigError(TradebaseError):
    """The configuration (environment, flags, seeds) cannot be used as given."""


class WarehouseUnavailable(TradebaseError):
    """The warehouse cannot be reached or is locked by another process."""


class IngestFileError(TradebaseError):
    """A whole input file is unusable (unreadable, no header, a required column missing); nothing loaded."""


class RowsRejected(TradebaseError):
    """Some rows of an ingested file were rejected; the valid rows were loaded."""


class DbtFailed(TradebaseError):
    """A dbt build or test failed; the message names the failing nodes."""
