"""The station's errors: one branch of edge's tree, so callers catch EdgeError for both."""

from __future__ import annotations

from edge.errors import EdgeError


class StationError(EdgeError):
    """Something the station cannot do; the message says what and how to fix it."""


class SchemaError(StationError):
    """The database schema is newer than this station knows, or its migrations failed."""


class AlertRefusedError(StationError):
    """An alert broke the contract or came on another device's topic; nothing was stored."""


class DecisionError(StationError):
    """A decision the station cannot record (unknown incident, same operator twice, ...)."""
