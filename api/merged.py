"""A merged record's address (a tombstone's id in /patients/<id>/...) answers 308 to the survivor's; a change
that would replace what the survivor holds (PUT, PATCH, DELETE) is refused with a 409 instead."""

from __future__ import annotations

from django.urls import reverse

from api.problems import MergedRecord, MergedRecordChange
from clinic.selectors import merged_patient_survivor
from core.errors import ErrorCode, InvalidInput
from core.ids import parse_uuid

# A change sent to a merged record's address was made on a view of the old record (its intake, its contact
# details, a course as it was): carried over, it would overwrite what the merge brought together on the survivor,
# e.g. erase a contraindication only the other record held. Refused; the client reads the survivor and sends the
# change there. Reads and additions (POST: a history line, a course, a plan, a merge) are redirected.
REPLACING_METHODS = frozenset({"PUT", "PATCH", "DELETE"})


def survivor_address(request, clinics, kwargs: dict) -> tuple[str, object] | None:
    """The same operation's path on the survivor, and the survivor's id, when `kwargs["patient_id"]` is a tombstone
    the caller's clinics could see; None otherwise."""
    pk = parse_uuid(kwargs.get("patient_id"))
    survivor = merged_patient_survivor(clinics, pk) if pk else None
    if survivor is None:
        return None
    match = request.resolver_match
    path = reverse(
        f"{match.namespace}:{match.url_name}" if match.namespace else match.url_name,
        kwargs={**kwargs, "patient_id": str(survivor.pk)},
    )
    return path, survivor.pk


def redirect_if_merged(request, clinics, kwargs: dict) -> None:
    """Raise a 308 to the same operation on the survivor when `kwargs["patient_id"]` is a tombstone the
    caller's clinics could see (a 409 for a replacing change, REPLACING_METHODS); do nothing otherwise (the caller
    then answers its 404)."""
    address = survivor_address(request, clinics, kwargs)
    if address is None:
        return
    location, survivor_id = address
    query = request.META.get("QUERY_STRING", "")
    refused = MergedRecordChange if request.method in REPLACING_METHODS else MergedRecord
    raise refused(location + (f"?{query}" if query else ""), survivor_id)


def refuse_if_merged(clinics, value, *, field: str) -> None:
    """Raise a 400 `patient_merged` naming the survivor (`merged_into`, and in `errors[field]`) when `value` (a
    patient id in a body or a filter) is a tombstone the caller's clinics could see; do nothing otherwise (the caller
    then answers its unknown_patient). Said as a merge's `into` says it: a client holding the old id learns the new
    one, instead of "no such patient" for a record that exists under another id."""
    pk = parse_uuid(value)
    survivor = merged_patient_survivor(clinics, pk) if pk else None
    if survivor is None:
        return
    raise InvalidInput(
        ErrorCode.PATIENT_MERGED,
        f"This record was merged into {survivor.pk}: send that id.",
        field=field,
        data={"merged_into": str(survivor.pk)},
    )
