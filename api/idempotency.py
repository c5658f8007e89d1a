"""Idempotency-Key for POSTs: the same key and body within 24 h replays the first response.

The key row is inserted in the same transaction as the work and saved with
its response before commit. A concurrent duplicate's insert waits on the
unique constraint (PostgreSQL) or on the write lock (SQLite) until the first
request commits, then finds the stored response and replays it. If the
first request fails unexpectedly, everything rolls back together, so a
retry runs afresh; there is never an "in progress" row left behind.

Every lock wait of the transaction, the key's and the work's (patient,
practitioners), is bounded by WAIT_SECONDS (PostgreSQL's lock_timeout, set by
the key's insert itself): past it the answer is a 409 `request_in_progress`
with Retry-After, and nothing is stored, so the retry with the same key runs
afresh.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from datetime import timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.urls import Resolver404, resolve
from django.utils import timezone
from rest_framework.response import Response
from rest_framework.utils.encoders import JSONEncoder

from api.access import caller_for
from api.merged import survivor_address
from api.models import IdempotencyKey
from api.problems import PROBLEM_CONTENT_TYPE, instance_of, problem, problem_response
from clinic.selectors import merged_patient_survivor
from core.compiled import save_fields
from core.db import lock_wait_exceeded
from core.etags import entity_tags
from core.ids import parse_uuid

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
# Printable ASCII, not starting or ending with a space (HTTP would drop those), as the schema publishes it.
KEY_PATTERN = r"^[!-~]([ -~]*[!-~])?$"
_KEY = re.compile(KEY_PATTERN)
# How long a duplicate waits for the first request before it is told to retry.
WAIT_SECONDS = 20


class _Failed(Exception):
    """Carries a response that is not the request's result (a 5xx; a 308 to a merged record's survivor, where
    nothing was done) out of the transaction, so the key and any work roll back together and the key stays free:
    the client sends the same key again (to the redirect's Location)."""

    def __init__(self, response: Response) -> None:
        self.response = response


def request_fingerprint(request, path: str | None = None) -> str:
    """The request a key names: its method, address and body, and its If-Match where it has one (the same key sent
    with another version is another request: a 422, not the replay of an answer to the first)."""
    body = json.dumps(request.data, sort_keys=True, separators=(",", ":"), cls=JSONEncoder)
    condition = request.headers.get("If-Match")
    made_from = ""
    if condition is not None:  # as the tags it names, however spaced (`"a","b"` and `"a", "b"` are one request)
        tags = "*" if condition.strip() == "*" else ",".join(entity_tags(condition) or [condition])
        made_from = f"\nIf-Match: {tags}"
    return hashlib.sha256(f"{request.method} {path or request.path}\n{body}{made_from}".encode()).hexdigest()


def _same_across_a_merge(view, request, kwargs: dict, stored: IdempotencyKey) -> bool:
    """The stored request is this one at another address of the same patient, a merge between them: this request
    names a merged record and, sent to the survivor's address, is the stored one (a keyed request answered with a
    308, carried out at the survivor's address, then retried as first sent, its answer lost); or the stored one named
    a record merged since into the one this names (made before the merge, retried at the survivor's address). Read
    only when the fingerprints differ, so a request costs no query for it."""
    if "patient_id" not in kwargs:
        return False
    clinics = view.clinics()
    address = survivor_address(request, clinics, kwargs)
    if address is not None:
        return request_fingerprint(request, address[0]) == stored.fingerprint
    stored_path = urlsplit(stored.path).path
    try:
        match = resolve(stored_path)
    except Resolver404:
        return False
    before = parse_uuid(match.kwargs.get("patient_id"))
    survivor = merged_patient_survivor(clinics, before) if before else None
    return (
        survivor is not None
        and str(survivor.pk) == str(kwargs["patient_id"])
        and match.view_name == request.resolver_match.view_name
        and request_fingerprint(request, stored_path) == stored.fingerprint
    )


def _replay(row: IdempotencyKey) -> Response:
    headers = {"Idempotent-Replayed": "true"}
    if row.response_location:
        headers["Location"] = row.response_location
    return Response(
        json.loads(row.response_body) if row.response_body is not None else None,
        status=row.response_status,
        headers=headers,
        content_type=row.response_content_type or None,
    )


def _problem(request, status_code: int, code: str, detail: str, **headers) -> Response:
    return problem_response(
        problem(status_code, code=code, detail=detail, instance=instance_of(request)), headers=headers or None
    )


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
    is waited for (up to WAIT_SECONDS): if it commits, the key is taken; if it rolls back, this insert goes
    ahead."""
    meta = IdempotencyKey._meta
    quote = connection.ops.quote_name
    columns = ", ".join(quote(meta.get_field(name).column) for name in _CLAIMED)
    values = [owner, key, fingerprint, method, path, 0, "", "", now]
    params = [
        meta.get_field(name).get_db_prep_save(value, connection) for name, value in zip(_CLAIMED, values, strict=True)
    ]
    placeholders = ", ".join(["%s"] * len(values))
    if connection.vendor == "postgresql":
        # The wait on a running duplicate's key (and every lock wait after it in this transaction) is bounded
        # by a lock_timeout set in the same statement: set_config(..., true) is SET LOCAL, run before the row
        # is inserted, so no statement of its own.
        source = f"SELECT {placeholders} FROM (SELECT set_config('lock_timeout', %s, true)) AS wait"
        params.append(f"{int(WAIT_SECONDS)}s")
    else:
        source = f"VALUES ({placeholders})"
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {quote(meta.db_table)} ({columns}) {source} "
            f"ON CONFLICT ({quote('owner')}, {quote('key')}) DO NOTHING RETURNING {quote(meta.pk.column)}",
            params,
        )
        inserted = cursor.fetchone()
    if inserted is None:
        return None
    row = IdempotencyKey(pk=inserted[0], **dict(zip(_CLAIMED, values, strict=True)))
    row._state.adding, row._state.db = False, connection.alias
    return row


def _names_a_survivor(response) -> bool:
    """A 400 patient_merged (a tombstone's id in the body): nothing was done, and the answer asks for the request
    again with the survivor's id, under the same key as a 308 allows (docs/api.md): not kept."""
    data = getattr(response, "data", None)
    return response.status_code == 400 and isinstance(data, dict) and data.get("code") == "patient_merged"


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
        fingerprint = request_fingerprint(request)  # parses the body: malformed JSON is a 400 before anything is stored
        owner = caller_for(request).owner_key
        for _ in range(3):
            now = timezone.now()
            try:
                claimed = False
                with transaction.atomic():
                    row = _claim(owner, key, fingerprint, request.method, instance_of(request)[:500], now)
                    if row is None:  # the key is taken (by a committed request: a running one is waited for)
                        existing = IdempotencyKey.objects.filter(owner=owner, key=key).first()
                        if existing is None:
                            continue  # purged in between: try again
                        if existing.created_at < now - timedelta(hours=settings.IDEMPOTENCY_KEY_TTL_HOURS):
                            existing.delete()  # expired: the key may be used afresh
                            continue
                        if existing.fingerprint != fingerprint and not _same_across_a_merge(
                            view, request, kwargs, existing
                        ):
                            return _problem(
                                request,
                                422,
                                "idempotency_key_reused",
                                f"This {HEADER} was used for a different request in the last "
                                f"{settings.IDEMPOTENCY_KEY_TTL_HOURS} hours; use a new key.",
                            )
                        return _replay(existing)
                    claimed = True
                    try:
                        response = method(view, request, *args, **kwargs)
                    except Exception as exc:  # mapped to a problem document like any other error
                        if lock_wait_exceeded(exc):
                            raise  # rolled back with the key, answered below
                        response = view.handle_exception(exc)
                    if response.status_code >= 500 or response.status_code == 308 or _names_a_survivor(response):
                        raise _Failed(response)
                    row.response_status = response.status_code
                    # As text, keys in the order sent: a replay renders the same bytes (a dict keeps its order).
                    row.response_body = json.dumps(response.data, cls=JSONEncoder)
                    row.response_content_type = (
                        PROBLEM_CONTENT_TYPE if response.status_code >= 400 else "application/json"
                    )
                    row.response_location = response.headers.get("Location", "")[:500]
                    save_fields(row, RESPONSE_FIELDS)  # its UPDATE's SQL kept: Django's save built it every time
                    return response
            except _Failed as failed:
                return failed.response
            except DatabaseError as error:
                if transaction.get_connection().in_atomic_block or not lock_wait_exceeded(error):
                    raise
                # Nothing was done: the key rolled back with the work, so a retry with it runs afresh.
                detail = (
                    f"This request waited over {WAIT_SECONDS} s for a record another request is changing; "
                    "nothing was done. Retry shortly with the same key."
                    if claimed
                    else f"A request with this {HEADER} is still being processed; retry shortly."
                )
                return _problem(request, 409, "request_in_progress", detail, **{"Retry-After": "2"})
        return _problem(
            request,
            409,
            "request_in_progress",
            f"A request with this {HEADER} is still being processed; retry shortly.",
            **{"Retry-After": "2"},
        )

    wrapper.idempotent = True  # api.permissions lets a stored key's replay through to it
    return wrapper


def idempotency_keys_purge(*, now) -> int:
    """Delete the Idempotency-Key records past their replay window (settings.IDEMPOTENCY_KEY_TTL_HOURS): each keeps
    its POST's answer, a patient's details in it. Daily, by the beat (api.tasks.purge_idempotency_keys) or the
    command of the same name; the number deleted."""
    cutoff = now - timedelta(hours=settings.IDEMPOTENCY_KEY_TTL_HOURS)
    deleted, _ = IdempotencyKey.objects.filter(created_at__lt=cutoff).delete()
    return deleted
