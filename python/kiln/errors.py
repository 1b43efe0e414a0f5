"""Exceptions of the Kiln client: each carries the server's message."""

from __future__ import annotations

from typing import Any


class KilnError(Exception):
    """A request Kiln refused or could not answer.

    Attributes:
        message: the server's message (or what went wrong on the way).
        status: the HTTP status, or None when no answer came.
        details: per-item problems the server listed, each a dict with
            ``index`` (the event, key or row), ``field`` and ``message``.
        accepted: for a push split into batches, the events of the batches
            before the one that failed, which were applied.
    """

    def __init__(self, message: str, status: int | None = None,
                 details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.details: list[dict[str, Any]] = details or []
        self.accepted = 0

    def __str__(self) -> str:
        if not self.details:
            return self.message
        shown = "; ".join(_detail(d) for d in self.details[:3])
        more = f"; and {len(self.details) - 3} more" if len(self.details) > 3 else ""
        return f"{self.message}: {shown}{more}"


def _detail(d: dict[str, Any]) -> str:
    where = f"#{d.get('index')}"
    if d.get("field"):
        where += f" {d['field']}"
    return f"{where}: {d.get('message', '')}"


class BadRequest(KilnError):
    """The request is invalid (400) or too large (413): fix it; nothing of
    it was applied. ``details`` lists the bad items."""


class Unauthorized(KilnError):
    """The server needs a bearer token (401): none was given, or it is not
    one the server knows. Pass ``token=`` to the Client."""


class Forbidden(KilnError):
    """The request is not allowed (403): the token lacks the scope the
    request needs (read, push or admin), or the process does not take this
    kind of request. Nothing of it was applied."""


class Overloaded(KilnError):
    """The server is at capacity, or the token is over its rate limit (429;
    the message says which). ``retry_after`` is the seconds it asked to
    wait."""

    def __init__(self, message: str, status: int | None = None,
                 details: list[dict[str, Any]] | None = None,
                 retry_after: float = 1.0) -> None:
        super().__init__(message, status, details)
        self.retry_after = retry_after


class Unavailable(KilnError):
    """The server could not answer (503: the store failed, it is shutting
    down or a view is being rebuilt), or could not be reached. Reads are
    retried before this is raised; a push is not, since part of it may have
    been applied."""
