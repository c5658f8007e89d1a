"""Opaque ids as they arrive from outside: one parser, so a malformed id reads as 'no such thing'."""

from __future__ import annotations

import uuid


def parse_uuid(value) -> uuid.UUID | None:
    """`value` as a UUID, or None when it is not one (never an exception: a bad id is simply unknown)."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except (TypeError, ValueError, AttributeError):
        return None
