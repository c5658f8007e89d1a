"""Domain exceptions with stable codes.

Raised where they happen; mapped once to RFC 9457 problem details by the API
and to form errors by the front desk.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scheduler.booking import BookingCheck


class DomainError(Exception):
    """Base class: `code` is stable and machine-readable, the message is for people."""

    def __init__(self, code: str, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


class InvalidInput(DomainError):
    """The request is malformed or names something that does not exist (HTTP 400).

    `errors` maps each offending field to its messages, so a form or an API
    client sees every problem at once; by default it holds the one `field`.
    """

    def __init__(self, code: str, message: str, *, field: str | None = None,
                 errors: dict[str, list[str]] | None = None) -> None:
        super().__init__(code, message, field=field)
        self.errors = errors or {field or "non_field_errors": [message]}


class NotFound(DomainError):
    """The thing asked for does not exist for this caller (HTTP 404)."""


class NotAllowed(DomainError):
    """The caller lacks the right for this action (HTTP 403)."""


class InvalidTransition(DomainError):
    """The appointment's status does not allow this action (HTTP 409)."""


class UnableToBook(DomainError):
    """A blocking rule, an absolute contraindication or a taken slot forbids it (HTTP 409)."""

    def __init__(self, check: BookingCheck) -> None:
        first = check.blocking[0].message if check.blocking else "The booking is not possible."
        super().__init__("booking_refused", first)
        self.check = check
