"""Refusals a service raises for the API and the CLI to show: one shape everywhere.

``status`` is the HTTP status to answer, ``field`` names what is wrong (a JSON path, a row, a
code), ``message`` says why in words, ``errors`` lists every (field, message) found, and ``reason``
is a stable machine code (``expired``, ``insufficient_points`` …) for clients to branch on.
"""

from __future__ import annotations


class RequestError(ValueError):
    """A request that cannot be carried out. Subclasses set ``error`` (the response's error code)."""

    error = "invalid_request"

    def __init__(
        self,
        status: int,
        field: str,
        message: str,
        errors: list[tuple[str, str]] | None = None,
        *,
        reason: str | None = None,
    ) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.status = status
        self.field = field
        self.message = message
        self.errors = errors or [(field, message)]
        self.reason = reason
