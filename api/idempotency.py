"""Idempotency-Key for POSTs: the same key and body within 24 h replays the first response.

The key row is inserted in the same transaction as the work and saved with
its response before commit. A concurrent duplicate's insert waits on the
unique constraint (PostgreSQL) or on the write lock (SQLite) until the first
request commits, then finds the stored response and replays it. If the
first request fails unexpectedly, everything rolls back together, so a
retry runs afresh; there is never an "in progress" row left behind.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.utils import timezone
from rest_framework.response import Response
from rest_framework.utils.encoders import JSONEncoder

from api.access import caller_for
from api.models import IdempotencyKey
from api.problems import PROBLEM_CONTENT_TYPE, instance_of, problem, problem_response

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
# Printable ASCII, not starting or ending with a space (HTTP would drop those), as the schema publishes it.
KEY_PATTERN = r"^[!-~]([ -~]*[!-~])?$"
_KEY = re.compile(KEY_PATTERN)
# How long a duplicate waits for the first request before it is told to retry.
WAIT_SECONDS = 20


class _Failed(Exception):
    """Carries a 5xx response out of the transaction, so the key and the work roll back together."""

    def __init__(self, response: Response) -> None:
        self.response = response


def _fingerprint(request) -> str:
    body = json.dumps(request.data, sort_keys=True, separators=(",", ":"), cls=JSONEncoder)
    return hashlib.sha256(f"{request.method} {request.path}\n{body}".encode()).hexdigest()


def _replay(row: IdempotencyKey) -> Response:
    headers = {"Idempotent-Replayed": "true"}
    if row.response_location:
        headers["Location"] = row.response_location
    return Response(
        row.response_body, status=row.response_status, headers=headers, content_type=row.response_content_type or None
    )


def _problem(request, status_code: int, code: str, detail: str, **headers) -> Response:
    return problem_response(
        problem(status_code, code=code, detail=detail, instance=instance_of(request)), headers=headers or None
    )


def _wait_for_lock_at_most(seconds: int) -> None:
    if connection.vendor == "postgresql":
        # Bounds how long a duplicate waits on the first request's uncommitted key (per transaction).
        with connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL lock_timeout = '{int(seconds)}s'")


def _reset_lock_wait() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL lock_timeout TO DEFAULT")


RESPONSE_FIELDS = ["response_status", "response_body", "response_content_type", "response_location"]
_CLAIMED = [
    "owner",
    "key",
    "fingerprint",
    "method",
    "path",
    "response_status",
    "response_content_type",
    "response_location",
    "created_at",
]


def _claim(owner: str, key: str, fingerprint: str, method: str, path: str, now) -> IdempotencyKey | None:
    """Insert the key's row, or None when the key is taken: one `INSERT ... ON CONFLICT DO NOTHING RETURNING`
    (PostgreSQL, SQLite 3.35+), no savepoint. A concurrent insert of the same key that has not committed yet
    is waited for (up to the transaction's lock_timeout): if it commits, the key is taken; if it rolls back,
    this insert goes ahead."""
    meta = IdempotencyKey._meta
    quote = connection.ops.quote_name
    columns = ", ".join(quote(meta.get_field(name).column) for name in _CLAIMED)
    values = [owner, key, fingerprint, method, path, 0, "", "", now]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES ({', '.join(['%s'] * len(values))}) "
            f"ON CONFLICT ({quote('owner')}, {quote('key')}) DO NOTHING RETURNING {quote(meta.pk.column)}",
            [
                meta.get_field(name).get_db_prep_save(value, connection)
                for name, value in zip(_CLAIMED, values, strict=True)
            ],
        )
        inserted = cursor.fetchone()
    if inserted is None:
        return None
    row = IdempotencyKey(pk=inserted[0], **dict(zip(_CLAIMED, values, strict=True)))
    row._state.adding, row._state.db = False, connection.alias
    return row


def idempotent(method):
    """Decorate a view's `post` so that an Idempotency-Key makes it safe to retry."""

    @functools.wraps(method)
    def wrapper(view, request, *args, **kwargs):
        key = request.headers.get(HEADER)
        if key is None:
            return method(view, request, *args, **kwargs)
        if len(key) > MAX_KEY_LENGTH or not _KEY.fullmatch(key):
            message = (
                f"{HEADER} must be 1 to {MAX_KEY_LENGTH} printable ASCII characters, "
                "not starting or ending with a space."
            )
            return problem_response(
                problem(
                    400,
                    code="invalid_idempotency_key",
                    kind="validation_error",
                    title="Invalid input",
                    detail=message,
                    instance=instance_of(request),
                    errors={HEADER: [message]},
                )
            )
        fingerprint = _fingerprint(request)  # parses the body: malformed JSON is a 400 before anything is stored
        owner = caller_for(request).owner_key
        for _ in range(3):
            now = timezone.now()
            try:
                with transaction.atomic():
                    _wait_for_lock_at_most(WAIT_SECONDS)
                    row = _claim(owner, key, fingerprint, request.method, instance_of(request)[:500], now)
                    if row is None:  # the key is taken (by a committed request: a running one is waited for)
                        existing = IdempotencyKey.objects.filter(owner=owner, key=key).first()
                        if existing is None:
                            continue  # purged in between: try again
                        if existing.created_at < now - timedelta(hours=settings.IDEMPOTENCY_KEY_TTL_HOURS):
                            existing.delete()  # expired: the key may be used afresh
                            continue
                        if existing.fingerprint != fingerprint:
                            return _problem(
                                request,
                                422,
                                "idempotency_key_reused",
                                f"This {HEADER} was used for a different request in the last "
                                f"{settings.IDEMPOTENCY_KEY_TTL_HOURS} hours; use a new key.",
                            )
                        return _replay(existing)
                    _reset_lock_wait()
                    try:
                        response = method(view, request, *args, **kwargs)
                    except Exception as exc:  # mapped to a problem document like any other error
                        response = view.handle_exception(exc)
                    if response.status_code >= 500:
                        raise _Failed(response)
                    body = json.loads(json.dumps(response.data, cls=JSONEncoder))
                    row.response_status = response.status_code
                    row.response_body = body
                    row.response_content_type = (
                        PROBLEM_CONTENT_TYPE if response.status_code >= 400 else "application/json"
                    )
                    row.response_location = response.headers.get("Location", "")[:500]
                    row.save(update_fields=RESPONSE_FIELDS)
                    return response
            except _Failed as failed:
                return failed.response
            except DatabaseError:
                if transaction.get_connection().in_atomic_block:
                    raise
                # Lock wait exceeded (PostgreSQL lock_timeout, SQLite busy timeout): the first is still running.
                return _problem(
                    request,
                    409,
                    "request_in_progress",
                    f"A request with this {HEADER} is still being processed; retry shortly.",
                    **{"Retry-After": "2"},
                )
        return _problem(
            request,
            409,
            "request_in_progress",
            f"A request with this {HEADER} is still being processed; retry shortly.",
            **{"Retry-After": "2"},
        )

    return wrapper
